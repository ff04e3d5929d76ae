"""`distill-sbs data` as its users call it (in this process through `cli.main`, what the installed command runs): the main
command, every input form, and one clear error per kind of bad input."""
import json, os, subprocess, sys
import pytest
from conftest import cli, error_line, ok
from distill_sbs.data import load_data

def test_builtin_task_writes_generic_files(tmp_path):
    res = ok(cli('data', '--n_train', 300, '--n_test', 60, '--output_dir', tmp_path/'out'))
    assert 'final: train 270, valid 30, test 60' in res.stdout
    assert sorted(p.name for p in (tmp_path/'out').iterdir()) == ['summary.json', 'test.jsonl', 'train.jsonl', 'valid.jsonl']
    summary = json.loads((tmp_path/'out'/'summary.json').read_text())
    assert summary['final'] == {'train': 270, 'valid': 30, 'test': 60}
    back = load_data('generic', data_dir=tmp_path/'out')
    assert back.summary.final == summary['final']

def test_subsample_and_run_seed(tmp_path):
    a = cli('data', '--n_train', 400, '--n_test', 40, '--subsample', 0.5, '--run', 3, '--output_dir', tmp_path/'a')
    b = cli('data', '--n_train', 400, '--n_test', 40, '--subsample', 0.5, '--run', 4, '--output_dir', tmp_path/'b')
    assert a.returncode == b.returncode == 0
    assert 'train subsampled to 50%: 180 of 360 rows (seed 3)' in a.stdout
    ids = lambda d, s: [json.loads(l)['id'] for l in (tmp_path/d/f'{s}.jsonl').read_text().splitlines()]
    assert ids('a', 'train') != ids('b', 'train') and ids('a', 'valid') == ids('b', 'valid')

RECS = [{'input': f'What is {i} + 1?', 'label': str(i + 1), 'rationale': f'{i} + 1 = {i+1}.'} for i in range(12)]

@pytest.mark.parametrize('name,text', [
    ('array.json', json.dumps(RECS, indent=2)),
    ('lines.jsonl', '\n'.join(json.dumps(r) for r in RECS)),
    ('pretty.json', '\n'.join(json.dumps(r, indent=4) for r in RECS)),
    ('table.csv', 'input,label,rationale\n' + '\n'.join(f"{r['input']},{r['label']},{r['rationale']}" for r in RECS)),
], ids=['array.json', 'lines.jsonl', 'pretty.json', 'table.csv'])
def test_generic_forms(tmp_path, name, text):
    (tmp_path/name).write_text(text)
    res = ok(cli('data', '--dataset', 'generic', '--data_dir', tmp_path/name))
    assert 'train        12        0          12' in res.stdout

def _write_cqa(d, n_records=4, n_outputs=4):
    (d/'cqa'/'llm').mkdir(parents=True)
    rec = lambda i: dict(id=f'q{i}', question=f'Where is thing {i}?', choices=['a', 'b', 'c', 'd', 'e'], answer='c')
    for split in ('train', 'test'):
        (d/'cqa'/f'cqa_{split}.json').write_text('\n'.join(json.dumps(rec(i)) for i in range(n_records)))
        (d/'cqa'/'llm'/f'{split}_CoT_0.json').write_text(json.dumps(['It is there. So the answer is (c) c.'] * n_outputs))

def _error(res): return error_line(res, 'data')

def test_truncated_jsonl(tmp_path):
    (tmp_path/'train.jsonl').write_text('\n'.join(json.dumps(r) for r in RECS)[:-15])
    msg = _error(cli('data', '--dataset', 'generic', '--data_dir', tmp_path))
    assert 'train.jsonl: record 12 (line 12) is not valid JSON' in msg and 'truncated' in msg

def test_truncated_json_array(tmp_path):
    (tmp_path/'train.json').write_text(json.dumps(RECS, indent=1)[:-40])
    msg = _error(cli('data', '--dataset', 'generic', '--data_dir', tmp_path))
    assert 'train.json: not valid JSON' in msg and 'line' in msg

def test_record_without_label(tmp_path):
    bad = RECS[:5] + [{'input': 'What is 9 + 9?', 'rationale': 'r'}] + RECS[5:]
    (tmp_path/'train.jsonl').write_text('\n'.join(json.dumps(r) for r in bad))
    assert _error(cli('data', '--dataset', 'generic', '--data_dir', tmp_path)).endswith(
        f"{tmp_path}/train.jsonl: record 6: missing field 'label'")

def test_empty_label(tmp_path):
    (tmp_path/'train.csv').write_text('input,label\nWhat is 1 + 1?,2\nWhat is 2 + 2?,\n')
    assert _error(cli('data', '--dataset', 'generic', '--data_dir', tmp_path)).endswith("train.csv: record 2: missing field 'label'")

def test_empty_file(tmp_path):
    (tmp_path/'train.jsonl').write_text('')
    assert _error(cli('data', '--dataset', 'generic', '--data_dir', tmp_path)).endswith('train.jsonl: the file is empty')

def test_misaligned_teacher_files(tmp_path):
    _write_cqa(tmp_path, n_records=4, n_outputs=3)
    msg = _error(cli('data', '--dataset', 'cqa', '--data_dir', tmp_path))
    assert 'train_CoT_*.json: 3 teacher outputs for 4 records in' in msg and 'cqa_train.json' in msg

def test_missing_teacher_file_number(tmp_path):
    _write_cqa(tmp_path)
    (tmp_path/'cqa'/'llm'/'train_CoT_0.json').rename(tmp_path/'cqa'/'llm'/'train_CoT_1.json')
    assert 'files numbered [1], expected 0 to 0' in _error(cli('data', '--dataset', 'cqa', '--data_dir', tmp_path))

def test_missing_data_dir(tmp_path):
    assert _error(cli('data', '--dataset', 'cqa', '--data_dir', tmp_path/'nope')).endswith('nope: no such folder')

def test_paper_record_without_field(tmp_path):
    _write_cqa(tmp_path)
    recs = (tmp_path/'cqa'/'cqa_test.json').read_text().splitlines()
    recs[2] = json.dumps({k: v for k, v in json.loads(recs[2]).items() if k != 'answer'})
    (tmp_path/'cqa'/'cqa_test.json').write_text('\n'.join(recs))
    assert _error(cli('data', '--dataset', 'cqa', '--data_dir', tmp_path)).endswith("cqa_test.json: record 3: missing field 'answer'")

def test_hub_unreachable_is_a_clear_error():
    msg = _error(cli('data', '--dataset', 'cqa', env={'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}))
    assert 'could not load cos_e/v1.11' in msg and '--data_dir' in msg

def test_bad_flags_use_argparse():
    res = cli('data', '--dataset', 'nope')
    assert res.returncode == 2 and 'invalid choice' in res.stderr
    assert _error(cli('data', '--subsample', 1.5)).endswith('subsample must be in (0, 1], got 1.5')

def test_launch_has_help_and_finds_its_programs_without_path(tmp_path):
    "`distill-sbs launch --help` is its own; with the environment's bin not on PATH it still runs the command (found beside this Python)."
    out = ok(cli('launch', '--help')).stdout
    assert out.startswith('usage: distill-sbs launch') and 'CLUSTER_SPEC' in out
    env = {k: v for k, v in os.environ.items() if k != 'CLUSTER_SPEC'} | {'PATH': '/usr/bin:/bin'}
    res = subprocess.run([sys.executable, '-c', 'import sys; from distill_sbs.cli import main; sys.exit(main(sys.argv[1:]))', 'launch', 'data',
                          '--n_train', '20', '--n_test', '5', '--output_dir', str(tmp_path/'d')], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0 and (tmp_path/'d'/'train.jsonl').exists(), res.stderr[-2000:]
