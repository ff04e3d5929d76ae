"""The files a user hands us, generated and damaged (hypothesis): a data folder of your own (`generic`) and a file of worked
examples (`--exemplars`). Each must load, or end in one line naming the file; never a traceback. The grid YAML, the teacher's
logits and the logprobs JSONL have theirs in test_sweep.py and test_teacher_files.py."""
import csv, io, json
from hypothesis import given, strategies as st
from conftest import fuzz, json_values
from distill_sbs.core import UserError
from distill_sbs.data import load_data
from distill_sbs.cot import ExemplarPool

FIELDS = ['input', 'label', 'rationale', 'teacher_label', 'id', 'choices']
texts = st.text(max_size=20)
values = st.one_of(texts, json_values, st.integers(-5, 5), st.none())
good = st.fixed_dictionaries({'input': st.text(min_size=1, max_size=20), 'label': st.text(min_size=1, max_size=8)},
                              optional={'rationale': texts | st.none(), 'teacher_label': texts | st.none(), 'extra': values})
damaged = st.dictionaries(st.sampled_from(FIELDS + ['extra']), values, max_size=6)
records = st.lists(good, min_size=3, max_size=30) | st.lists(good | damaged, max_size=30)  # files that should load, and files with a bad record

def _as(fmt, recs, cut):
    "The records in one of the formats people keep them in, maybe cut short."
    if fmt == 'jsonl': text = '\n'.join(json.dumps(r) for r in recs)
    elif fmt == 'json': text = json.dumps(recs, indent=1)
    else:
        out = io.StringIO(); w = csv.DictWriter(out, fieldnames=sorted({k for r in recs for k in r}) or ['input'])
        w.writeheader(); w.writerows({k: v if isinstance(v, str) else json.dumps(v) for k, v in r.items()} for r in recs); text = out.getvalue()
    return text[:cut] if cut is not None else text

def _one_line(e, name): assert isinstance(e, UserError) and '\n' not in str(e).strip() and name in str(e), repr(e)

@fuzz(120)
@given(recs=records, fmt=st.sampled_from(['jsonl', 'json', 'csv']), cut=st.none() | st.none() | st.integers(0, 400), junk=st.binary(max_size=8))
def test_a_generic_data_file_loads_or_is_one_line(tmp_path_factory, recs, fmt, cut, junk):
    d = tmp_path_factory.mktemp('generic')
    f = d/f'train.{fmt}'
    f.write_bytes(_as(fmt, recs, cut).encode() + (junk if cut is not None else b''))
    try: data = load_data('generic', data_dir=str(f))
    except Exception as e: return _one_line(e, f.name)
    for split in data.values():
        assert all(isinstance(r['input'], str) and r['input'].strip() and isinstance(r['label'], str) and r['label'].strip() for r in split)

@fuzz(120)
@given(recs=records, fmt=st.sampled_from(['jsonl', 'json', 'csv']), cut=st.none() | st.integers(0, 400))
def test_an_exemplars_file_loads_or_is_one_line(tmp_path_factory, recs, fmt, cut):
    data = _arith()
    f = tmp_path_factory.mktemp('ex')/f'shots.{fmt}'
    f.write_text(_as(fmt, recs, cut))
    try: pool = ExemplarPool.from_file(str(f), data)
    except Exception as e: return _one_line(e, f.name)
    assert all(isinstance(e.input, str) and e.input.strip() and isinstance(e.label, str) and e.label.strip() for e in pool.exemplars)

_ARITH = []
def _arith():
    if not _ARITH: _ARITH.append(load_data('arith', n_train=40, n_test=10))
    return _ARITH[0]
