"""Teacher files are checked before training (issue 37): a teacher-logits folder written by `write_teacher_logits`
records each shard file's shape, dtype and sha256 and writes everything atomically; `TopKLogits` refuses a cut-off,
empty, missing or damaged file, a half-written manifest, NaN or positive log-probabilities, ids outside the
vocabulary and arrays of the wrong type, each with one line naming the file (and the row when it is a value); and
`read_logprobs` refuses a `*_logprobs.jsonl` line with a log-probability above 0 or not a number, or an alternative
listed twice, naming the file and the line. Random damage gives either a folder whose values are all valid or one line."""
import hashlib, io, json, math, shutil, tempfile
from pathlib import Path
import numpy as np
import pytest
from hypothesis import given, strategies as st
from conftest import cli, fuzz, json_values, ok, refused
from distill_sbs.collator import tokenize_tasks
from distill_sbs.data import load_data
from distill_sbs.kd_align import read_logprobs
from distill_sbs.kd_teachers import LOGITS_META, LOGP_EPS, OnlineTeacher, TeacherError, TopKLogits, write_teacher_logits
from distill_sbs.students import load_student

ARRAYS = ('ids', 'logp', 'tail', 'counts')

@pytest.fixture(scope='module')
def written(tmp_path_factory):
    "An untrained `tiny-large`'s top 8 on a small arithmetic set, written in three shards of 16 rows; the tokenised split and tokenizer beside it."
    data = load_data('arith', n_train=40, n_test=5)
    texts = [t for c in ('input', 'rationale', 'label') for t in data['train'][c] if t]
    model, tok = load_student('tiny-large', texts=texts, quiet=True)
    train = tokenize_tasks(data, tok, max_input_length=128, max_label_length=16, max_rationale_length=96)['train']
    out = tmp_path_factory.mktemp('logits')/'tl'
    write_teacher_logits(OnlineTeacher(model, tok, 'tiny-large'), train, out, k=8, shard_rows=16, progress=False)
    return dict(path=out, train=train, tok=tok, teacher=OnlineTeacher(model, tok, 'tiny-large'))

@pytest.fixture(scope='module')
def cli_written(tmp_path_factory):
    "`distill-sbs teacher-logits` on the flags `TRAIN` trains with: a folder `distill-sbs train --teacher_logits` accepts."
    out = tmp_path_factory.mktemp('cli-logits')/'tl'
    ok(cli('teacher-logits', '--teacher', 'tiny-large', *DATA, '--top_k', 8, '--output_dir', out))
    return out

DATA = ['--n_train', 40, '--n_test', 5, '--batch_size', 8]
TRAIN = [*DATA, '--no_log', '--max_steps', 1, '--eval_steps', 1, '--gen_max_len', 4]

def copy(src:Path, dst:Path) -> Path: shutil.copytree(src, dst); return dst
def manifest(d:Path) -> dict: return json.loads((d/LOGITS_META).read_text())
def write_manifest(d:Path, m:dict): (d/LOGITS_META).write_text(json.dumps(m, indent=2) + '\n')
def load(d:Path, rel:str) -> np.ndarray: return np.load(d/rel)

def resave(d:Path, rel:str, arr:np.ndarray):
    "Replace the file `rel` with `arr` and record it in the manifest as if written so: a teacher that wrote bad values."
    buf = io.BytesIO(); np.save(buf, arr); (d/rel).write_bytes(buf.getvalue())
    m = manifest(d)
    if 'shards' in m:
        shard, name = rel.split('/')
        m['shards'][shard][name] = dict(shape=list(arr.shape), dtype=str(arr.dtype), sha256=hashlib.sha256(buf.getvalue()).hexdigest())
        write_manifest(d, m)

def legacy(d:Path) -> Path:
    "The folder as written before its files had checksums: no 'shards' in its manifest."
    m = manifest(d); del m['shards']; write_manifest(d, m); return d

def one_line(e, *names) -> str:
    msg = str(e.value if hasattr(e, 'value') else e)
    assert '\n' not in msg and all(str(n) in msg for n in names), msg
    return msg

def set_at(d, rel, index, value, dtype=None):
    arr = load(d, rel).copy()
    arr[index] = value
    resave(d, rel, arr.astype(dtype) if dtype else arr)

def cut(d, rel, keep): p = d/rel; p.write_bytes(p.read_bytes()[:keep(len(p.read_bytes()))])

DAMAGE = {  # name: (damage(d), the file named, what the line says)
    'truncated':        (lambda d: cut(d, 'shard-00001/label_logp.npy', lambda n: n // 2), 'shard-00001/label_logp.npy', 'not the ones written'),
    'empty':            (lambda d: cut(d, 'shard-00002/rationale_ids.npy', lambda n: 0), 'shard-00002/rationale_ids.npy', 'not the ones written'),
    'one byte changed': (lambda d: (p := d/'shard-00000/label_tail.npy').write_bytes(p.read_bytes()[:-1] + b'\x7f'), 'shard-00000/label_tail.npy', 'not the ones written'),
    'deleted':          (lambda d: (d/'shard-00001/rationale_counts.npy').unlink(), 'shard-00001/rationale_counts.npy', 'missing'),
    'shard gone':       (lambda d: shutil.rmtree(d/'shard-00002'), 'shard-00002/label_ids.npy', 'missing'),
    'manifest half':    (lambda d: cut(d, LOGITS_META, lambda n: n // 2), LOGITS_META, 'not a whole JSON file'),
    'manifest empty':   (lambda d: cut(d, LOGITS_META, lambda n: 0), LOGITS_META, 'not a whole JSON file'),
    'manifest field':   (lambda d: write_manifest(d, {**manifest(d), 'k': 'eight'}), LOGITS_META, "field 'k' is 'eight'"),
    'manifest list':    (lambda d: (d/LOGITS_META).write_text('[1, 2]'), LOGITS_META, 'not a JSON object'),
    'shard entry':      (lambda d: write_manifest(d, {**manifest(d), 'shards': {**manifest(d)['shards'], 'shard-00001': {'x': 1}}}), LOGITS_META, 'shard-00001'),
    'nan logp':         (lambda d: set_at(d, 'shard-00001/label_logp.npy', (3, 2), np.nan), 'shard-00001/label_logp.npy', 'not a number'),
    'positive logp':    (lambda d: set_at(d, 'shard-00000/rationale_logp.npy', (5, 0), 1.0), 'shard-00000/rationale_logp.npy', 'log-probability 1.0 is above 0'),
    'inf logp':         (lambda d: set_at(d, 'shard-00000/rationale_logp.npy', (0, 0), np.inf), 'shard-00000/rationale_logp.npy', 'above 0'),
    'nan tail':         (lambda d: set_at(d, 'shard-00002/label_tail.npy', 1, np.nan), 'shard-00002/label_tail.npy', 'not a number'),
    'id past vocab':    (lambda d: set_at(d, 'shard-00001/rationale_ids.npy', (7, 3), 10_000), 'shard-00001/rationale_ids.npy', 'id 10000 is outside its vocabulary'),
    'negative id':      (lambda d: set_at(d, 'shard-00000/label_ids.npy', (0, 1), -1), 'shard-00000/label_ids.npy', 'outside'),
    'id repeated':      (lambda d: set_at(d, 'shard-00000/label_ids.npy', (2, 1), load(d, 'shard-00000/label_ids.npy')[2, 0]), 'shard-00000/label_ids.npy', 'repeats'),
    'mass not 1':       (lambda d: set_at(d, 'shard-00001/label_logp.npy', (4, slice(None)), -30.), 'shard-00001/label_tail.npy', 'not 1'),
    'float64 logp':     (lambda d: resave(d, 'shard-00000/label_logp.npy', load(d, 'shard-00000/label_logp.npy').astype(np.float64)), 'shard-00000/label_logp.npy', 'float64'),
    'int64 ids':        (lambda d: resave(d, 'shard-00002/rationale_ids.npy', load(d, 'shard-00002/rationale_ids.npy').astype(np.int64)), 'shard-00002/rationale_ids.npy', 'int64'),
    'rows cut':         (lambda d: resave(d, 'shard-00001/label_ids.npy', load(d, 'shard-00001/label_ids.npy')[:-1]), 'shard-00001/label_ids.npy', 'holds'),
    'counts off':       (lambda d: set_at(d, 'shard-00000/label_counts.npy', 0, 99), 'shard-00000/label_counts.npy', 'target tokens in all'),
    'negative count':   (lambda d: set_at(d, 'shard-00000/label_counts.npy', 0, -1), 'shard-00000/label_counts.npy', 'has -1 target tokens'),
}

@pytest.mark.parametrize('name', DAMAGE)
def test_a_damaged_folder_gets_one_line_naming_the_file(written, tmp_path, name):
    damage, rel, says = DAMAGE[name]
    d = copy(written['path'], tmp_path/'tl')
    damage(d)
    with pytest.raises(TeacherError) as e: TopKLogits(d)
    msg = one_line(e, d/rel, says)
    if name in ('nan logp', 'positive logp', 'id past vocab', 'nan tail'): assert 'training row ' in msg and 'target token ' in msg

# The same damage to a folder written before its files had checksums: what the values and shapes say is still checked
LEGACY = {'truncated': 'bytes of data where its header', 'empty': 'not a .npy array', 'deleted': 'missing', 'nan logp': 'not a number',
          'positive logp': 'above 0', 'id past vocab': 'outside', 'float64 logp': 'float64', 'counts off': 'target tokens in all'}

@pytest.mark.parametrize('name', LEGACY)
def test_a_damaged_folder_without_checksums(written, tmp_path, name):
    damage, rel, _ = DAMAGE[name]
    d = legacy(copy(written['path'], tmp_path/'tl'))
    damage(d)
    with pytest.raises(TeacherError) as e: TopKLogits(d)
    one_line(e, d/rel, LEGACY[name])

def test_what_is_written_is_recorded(written, tmp_path):
    d, m = written['path'], manifest(written['path'])
    assert not list(d.rglob('*.tmp')) and sorted(m['shards']) == ['shard-00000', 'shard-00001', 'shard-00002']
    for shard, files in m['shards'].items():
        assert set(files) == {f'{t}_{a}.npy' for t in ('label', 'rationale') for a in ARRAYS}
        for name, entry in files.items():
            arr = load(d, f'{shard}/{name}')
            assert entry == dict(shape=list(arr.shape), dtype=str(arr.dtype), sha256=hashlib.sha256((d/shard/name).read_bytes()).hexdigest())
    t = TopKLogits(d)
    t.check(written['train'], written['tok'], 1.0)
    assert t.checksums
    # a folder written before checksums still opens, with the same values
    old = TopKLogits(legacy(copy(d, tmp_path/'old')))
    assert not old.checksums and all((old.arrays[k]['logp'] == t.arrays[k]['logp']).all() for k in t.arrays)

def test_rerun_rewrites_a_shard_the_manifest_does_not_record(written, tmp_path):
    "Killed between renaming a shard and recording it: the rerun writes that shard again; a folder without checksums gets them."
    d = copy(written['path'], tmp_path/'tl')
    m = manifest(d); del m['shards']['shard-00001']; write_manifest(d, m)
    (d/'shard-00001'/'label_logp.npy').write_bytes(b'half')
    with pytest.raises(TeacherError) as e: TopKLogits(d)
    one_line(e, '1 of 3 shards are missing')
    write_teacher_logits(written['teacher'], written['train'], d, k=8, shard_rows=16, progress=False)
    assert manifest(d) == manifest(written['path'])
    assert (d/'shard-00001'/'label_logp.npy').read_bytes() == (written['path']/'shard-00001'/'label_logp.npy').read_bytes()
    old = legacy(copy(written['path'], tmp_path/'old'))
    write_teacher_logits(written['teacher'], written['train'], old, k=8, shard_rows=16, progress=False)
    assert manifest(old) == manifest(written['path'])
    (d/LOGITS_META).write_text('{"k": 8, "tem')
    with pytest.raises(TeacherError) as e: write_teacher_logits(written['teacher'], written['train'], d, k=8, shard_rows=16, progress=False)
    one_line(e, d/LOGITS_META, 'not a whole JSON file')

def test_ids_outside_the_students_vocabulary_are_refused_at_check(written, tmp_path):
    d = copy(written['path'], tmp_path/'tl')
    V = len(written['tok'])
    write_manifest(d, {**manifest(d), 'vocab_size': V + 10})
    set_at(d, 'shard-00002/label_ids.npy', (0, 4), V + 3)
    t = TopKLogits(d)  # within the vocabulary its manifest records
    with pytest.raises(TeacherError) as e: t.check(written['train'], written['tok'], 1.0)
    one_line(e, d/'shard-00002/label_ids.npy', f"id {V + 3} is outside this student's vocabulary", 'training row 32')

@pytest.mark.parametrize('name', ['truncated', 'nan logp', 'manifest half', 'id past vocab'])
def test_train_refuses_a_damaged_folder(cli_written, tmp_path, name):
    damage, rel, says = DAMAGE[name]
    d = copy(cli_written, tmp_path/'tl')
    rel = rel.replace('shard-00001', 'shard-00000').replace('shard-00002', 'shard-00000')
    {'truncated': lambda: cut(d, rel, lambda n: n // 2), 'nan logp': lambda: set_at(d, rel, (3, 2), np.nan),
     'manifest half': lambda: cut(d, rel, lambda n: n // 2), 'id past vocab': lambda: set_at(d, rel, (7, 3), 10_000)}[name]()
    run = tmp_path/'run'
    line = refused(cli('train', '--teacher_logits', d, *TRAIN, '--output_dir', run), says, 'train')
    assert str(d/rel) in line
    assert not (run/'train_config.json').exists() and not list(run.rglob('*.safetensors'))

def _valid(t:TopKLogits):
    "Every value of an opened folder is one a teacher could have written."
    for a in t.arrays.values():
        assert a['ids'].dtype == np.int32 and ((a['ids'] >= 0) & (a['ids'] < t.meta['vocab_size'])).all()
        for x in (a['logp'], a['tail']): assert not np.isnan(x).any() and (x <= LOGP_EPS).all()
        assert len(a['ids']) == len(a['logp']) == len(a['tail']) == int(a['counts'].sum()) and (a['counts'] >= 0).all()
    assert t.summary()['tokens'] == sum(len(a['ids']) for a in t.arrays.values())

FILES = [f'shard-{i:05d}/{t}_{a}.npy' for i in range(3) for t in ('label', 'rationale') for a in ARRAYS] + [LOGITS_META]

@fuzz(60)
@given(rel=st.sampled_from(FILES), checksums=st.booleans(), how=st.sampled_from(['bytes', 'cut', 'value']), data=st.data())
def test_random_damage_opens_valid_or_gets_one_line(written, rel, checksums, how, data):
    with tempfile.TemporaryDirectory() as tmp:
        d = copy(written['path'], Path(tmp)/'tl')
        if not checksums: legacy(d)
        raw = (d/rel).read_bytes()
        if how == 'cut': (d/rel).write_bytes(raw[:data.draw(st.integers(0, len(raw)), label='keep')])
        elif how == 'bytes' or rel == LOGITS_META:
            b = bytearray(raw)
            for at, v in data.draw(st.lists(st.tuples(st.integers(0, len(b) - 1), st.integers(0, 255)), min_size=1, max_size=4), label='bytes'): b[at] = v
            (d/rel).write_bytes(bytes(b))
        else:  # a value the teacher could have written, recorded with its checksum
            arr = load(d, rel).copy()
            at = data.draw(st.integers(0, arr.size - 1), label='at')
            v = data.draw(st.integers(-2**31, 2**31 - 1) if arr.dtype.kind == 'i' else st.floats(width=16 if arr.dtype == np.float16 else 32), label='value')
            arr.reshape(-1)[at] = v
            resave(d, rel, arr)
        try: t = TopKLogits(d)
        except TeacherError as e: one_line(e, d)
        else: _valid(t)

# ---- a teacher's logprobs lines

GOOD = [{'id': f'r{i}', 'text': '1 + 1 = 2', 'tokens': [['1', -0.01, [['1', -0.01], ['2', -4.6]]], [' +', -0.2, [[' +', -0.2], [' -', -1.8], [' *', -5.0]]]]}
        for i in range(4)]

def _file(d:Path, lines:list) -> Path:
    p = d/'train_logprobs.jsonl'
    p.write_text(''.join((l if isinstance(l, str) else json.dumps(l)) + '\n' for l in lines))
    return p

def test_good_lines_are_read(tmp_path):
    got = read_logprobs(_file(tmp_path, GOOD))
    assert list(got) == ['r0', 'r1', 'r2', 'r3'] and got['r0'][1] == (' +', -0.2, [(' +', -0.2), (' -', -1.8), (' *', -5.0)])
    assert read_logprobs(_file(tmp_path, [{**GOOD[0], 'tokens': [['1', 0.0005, [['1', 0.0005]]]]}]))  # rounding above 0 is allowed

def _bad(token:list) -> dict: return {**GOOD[2], 'tokens': [GOOD[2]['tokens'][0], token]}

BAD = {  # the second token of line 3 made bad: what the line says
    'logprob above 0':          (_bad([' +', 0.5, [[' +', 0.5]]]), 'has log-probability 0.5'),
    'alternative above 0':      (_bad([' +', -0.2, [[' +', -0.2], [' -', 2.0]]]), "alternative ' -', has log-probability 2.0"),
    'NaN':                      ('{"id": "r2", "tokens": [["1", NaN, []]]}', 'log-probability nan'),
    'Infinity':                 ('{"id": "r2", "tokens": [["1", -0.1, [["2", Infinity]]]]}', 'log-probability inf'),
    'minus Infinity':           ('{"id": "r2", "tokens": [["1", -Infinity, []]]}', 'log-probability -inf'),
    'alternative twice':        (_bad([' +', -0.2, [[' +', -0.2], [' -', -1.8], [' -', -3.0]]]), "lists the alternative ' -' twice"),
    'not bytes of UTF-8':       (None, 'UnicodeDecodeError'),
}

@pytest.mark.parametrize('name', BAD)
def test_a_bad_line_gets_one_line_naming_the_file_and_line(tmp_path, name):
    line, says = BAD[name]
    p = _file(tmp_path, [GOOD[0], GOOD[1], line or GOOD[2], GOOD[3]])
    if line is None: p.write_bytes(p.read_bytes().replace(b'"r2"', b'"r\xff2"'))
    with pytest.raises(TeacherError) as e: read_logprobs(p)
    one_line(e, p, 'line 3 is not a line of', says)

bad_logprob = st.one_of(st.floats(min_value=2e-3, allow_infinity=True), st.just(math.nan), st.just(-math.inf))

@fuzz(60)
@given(at=st.integers(0, 3), where=st.sampled_from(['token', 'alternative', 'twice']), value=bad_logprob)
def test_generated_bad_lines_get_one_line(tmp_path, at, where, value):
    lines = json.loads(json.dumps(GOOD))
    tok = lines[at]['tokens'][1]
    if where == 'token': tok[1] = value
    elif where == 'alternative': tok[2][1][1] = value
    else: tok[2].append(list(tok[2][0]))
    p = _file(tmp_path, lines)
    with pytest.raises(TeacherError) as e: read_logprobs(p)
    one_line(e, p, f'line {at + 1} is not a line of')

@fuzz(80)
@given(value=json_values, at=st.integers(0, 3))
def test_any_json_line_is_read_or_gets_one_line(tmp_path, value, at):
    lines = [*GOOD[:at], value, *GOOD[at + 1:]]
    p = _file(tmp_path, [json.dumps(v) for v in lines])
    try: got = read_logprobs(p)
    except TeacherError as e: one_line(e, p, f'line {at + 1} is not a line of')
    else:
        for toks in got.values():
            for t, lp, alts in toks:
                assert lp <= 1e-3 and math.isfinite(lp) and len({a for a, _ in alts}) == len(alts)
                assert all(math.isfinite(x) and x <= 1e-3 for _, x in alts)

def test_train_refuses_a_bad_logprobs_line(tmp_path):
    "`distill-sbs train --teacher_logprobs` with a line whose log-probability is above 0: one line naming the file and line, nothing written."
    from test_api_kd import FAST
    from distill_sbs.loopback import LoopbackLLM
    out = tmp_path/'taught'
    with LoopbackLLM() as llm:
        ok(cli('teach', '--model', 'stand-in', '--base_url', llm.openai_url, '--output_dir', out, '--no_progress',
               '--dataset', 'arith', '--n_train', 40, '--n_test', 5, '--logprobs', 3))
    lines = (out/'train_logprobs.jsonl').read_text().splitlines()
    rec = json.loads(lines[1]); rec['tokens'][0][1] = 0.7
    bad = tmp_path/'bad_logprobs.jsonl'
    bad.write_text('\n'.join([lines[0], json.dumps(rec), *lines[2:]]) + '\n')
    run = tmp_path/'run'
    line = refused(cli('train', '--dataset', 'generic', '--data_dir', out, '--teacher_logprobs', bad, '--kd_on', 'rationale',
                       *FAST, '--output_dir', run), 'line 2 is not a line of', 'train')
    assert str(bad) in line and 'log-probability 0.7' in line
    assert not (run/'train_config.json').exists()
