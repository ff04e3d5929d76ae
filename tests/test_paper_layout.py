"The paper's released layout for each task: the real CQA release when ../shared is here, made-up folders for the others."
import json, os, subprocess, sys, textwrap
from conftest import cli, ok
from distill_sbs.data import load_data

def test_cqa_release(shared):
    res = ok(cli('data', '--dataset', 'cqa', '--data_dir', shared/'data'))
    rows = {l.split()[0]: l.split() for l in res.stdout.splitlines() if l.split() and l.split()[0] in ('train', 'test')}
    # split, read, dropped, rationales, unparsable, no answer, teacher acc
    assert rows['train'][:6] == ['train', '9,741', '0', '9,741', '0', '3']
    assert rows['test'] == ['test', '1,221', '0', '1,221', '0', '0', '78.3%']  # normalised exact match; the paper's strict match gives 77.2%
    data = load_data('cqa', data_dir=shared/'data')
    assert round(data.summary.splits['test'].teacher_acc, 4) == 0.7830
    assert data['test'][0]['input'].count('\n(') == 5 and '\nAnswer Choices:\n(a) ' in data['test'][0]['input']

def _layout(root, task, splits, folder='llm'):
    d = root/task; (d/folder).mkdir(parents=True)
    for split, (records, outputs) in splits.items():
        (d/f'{task}_{split}.json').write_text('\n'.join(json.dumps(r) for r in records))
        for i in range(0, len(outputs), 2):  # two outputs a file, as the release splits them 1,000 a file
            (d/folder/f'{split}_CoT_{i//2}.json').write_text(json.dumps(outputs[i:i+2]))
    return root

def test_anli1_layout(tmp_path):
    recs = [dict(uid=f'a{i}', premise=f'P{i}.', hypothesis=f'H{i}.', label=i % 3, reason='') for i in range(5)]
    outs = ['P says so. So the answer is entailment.\n\nPremise: next', 'Unclear. So the answer is neutral.',
            'No. So the answer is neutral.', 'Says nothing', 'Yes. So the answer is neutral.']
    data = load_data('anli1', data_dir=_layout(tmp_path, 'anli1', {s: (recs, outs) for s in ('train', 'valid', 'test')}, 'palm'))
    rep = data.summary.splits['test']
    assert (rep.read, len(rep.unparsable), rep.teacher_correct) == (5, 1, 3)
    assert data['test'][0] == dict(id='a0', input='P0.</s>H0.', label='entailment', rationale='P says so.',
                                   teacher_label='entailment', choices=['entailment', 'neutral', 'contradiction'])
    assert data.summary.final == {'train': 5, 'valid': 5, 'test': 5}  # anli1 has its own validation split

def test_svamp_layout_compares_equations_by_value(tmp_path):
    recs = [dict(input=f'Jack had {i+5} pens and gave away {i}.\nHow many are left?', label=f'( {i+5}.0 - {i}.0 )') for i in range(4)]
    outs = [f'He gave {i} of {i+5}. The answer is ({i+5} - {i}).' for i in range(3)] + ['He had some. The answer is 5.']
    data = load_data('svamp', data_dir=_layout(tmp_path, 'svamp', {'train': (recs * 5, outs * 5), 'test': (recs, outs)}))
    rep = data.summary.splits['test']
    assert (rep.teacher_correct, len(rep.no_answer), rep.teacher_acc) == (3, 1, 0.75)
    assert data.summary.final == {'train': 18, 'valid': 2, 'test': 4}

def test_smollm2_is_converted_once_when_two_processes_ask_at_once(tmp_path):
    "`smollm2` (chapter 0) from a `shared` folder, asked for by two real processes at once: one conversion, under its lock, and both get the whole folder."
    models = tmp_path/'shared'/'models'/'smollm2-135m-instruct'
    models.mkdir(parents=True)
    (models/'to_hf.py').write_text(textwrap.dedent('''\
        import pathlib, sys, time  # a stand-in for the real converter: slow enough for the two to meet, and counted
        with open(pathlib.Path(__file__).parent/'conversions', 'a') as f: f.write('one\\n')
        out = pathlib.Path(sys.argv[1]); out.mkdir(parents=True); time.sleep(1); (out/'model.safetensors').write_text('weights')
        '''))
    cache = tmp_path/'cache'/'smollm2'
    ask = f'from distill_sbs.data import smollm2; print(smollm2(shared={str(tmp_path/"shared")!r}, cache={str(cache)!r}))'
    procs = [subprocess.Popen([sys.executable, '-c', ask], stdout=subprocess.PIPE, text=True, env={**os.environ, 'HF_HUB_OFFLINE': '1'})
             for _ in range(2)]
    assert [p.communicate(timeout=300)[0].strip() for p in procs] == [str(cache)] * 2
    assert (models/'conversions').read_text() == 'one\n'
    assert (cache/'model.safetensors').read_text() == 'weights' and sorted(p.name for p in cache.parent.iterdir()) == ['smollm2', 'smollm2.lock']
