"GSM8K, MultiArith and ASDiv from small local copies in the Hub's layout, offline: labels, rationales, dropped rows, the CLI, scoring."
import json
import pytest
import datasets, huggingface_hub
from datasets import Dataset
from conftest import cli, error_line
from distill_sbs.core import DataError
from distill_sbs.sources import PARSERS
from distill_sbs.answers import answer_correct, numeric_value
from distill_sbs.data import load_data
from distill_sbs.prompts import PROMPTS

OFFLINE = {'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}

@pytest.fixture(autouse=True)
def offline(monkeypatch):
    "No Hub in this process either: the env vars for anything that reads them now, the flags the libraries read at import."
    for k, v in OFFLINE.items(): monkeypatch.setenv(k, v)
    monkeypatch.setattr(datasets.config, 'HF_HUB_OFFLINE', True)
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', True)

# The README.md YAML of the real repositories, cut to the `configs:` block that `load_dataset` reads
GSM8K_README = """---
configs:
- config_name: main
  data_files:
  - split: train
    path: main/train-*
  - split: test
    path: main/test-*
- config_name: socratic
  data_files:
  - split: train
    path: socratic/train-*
  - split: test
    path: socratic/test-*
---
# Dataset Card for GSM8K
"""
ASDIV_README = """---
license: cc-by-nc-4.0
configs:
- config_name: asdiv
  data_files:
  - split: validation
    path: asdiv/validation-*
  default: true
---
"""

def hub_copy(root, files, readme=None):
    "A local copy of a Hub dataset repository: {path in the repo: records}, Parquet or a JSON array by extension, and a README.md."
    for rel, recs in files.items():
        (root/rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith('.parquet'): Dataset.from_list(recs).to_parquet(root/rel)
        else: (root/rel).write_text(json.dumps(recs, indent=4))
    if readme is not None: (root/'README.md').write_text(readme)
    return root

def gsm(i):
    "A made-up GSM8K-style record: a worked solution with calculator annotations, then `#### answer` (thousands with commas)."
    return {'question': f'A shop packs {i} boxes of 12 eggs and sells 5 eggs. How many eggs are left?',
            'answer': f'The boxes hold {i} * 12 = <<{i}*12={12*i}>>{12*i} eggs.\n'
                      f'After selling 5, {12*i} - 5 = <<{12*i}-5={12*i-5}>>{12*i-5} eggs are left.\n#### {12*i-5:,}'}

def gsm8k_copy(root, train=range(1, 41), test=(100, 101, 102), extra_test=()):
    return hub_copy(root, {'main/train-00000-of-00001.parquet': [gsm(i) for i in train],
                           'main/test-00000-of-00001.parquet': [gsm(i) for i in test] + list(extra_test),
                           'socratic/train-00000-of-00001.parquet': [gsm(1)], 'socratic/test-00000-of-00001.parquet': [gsm(2)]},
                    GSM8K_README)

def one_line_error(res): return error_line(res, 'data')

def test_gsm8k_worked_solutions_are_rationales(tmp_path):
    extra = [{'question': 'How many pens, 3 or 4?', 'answer': 'It is unclear.\n#### 3 or 4'}]
    data = load_data('gsm8k', data_dir=gsm8k_copy(tmp_path/'gsm8k', extra_test=extra))
    s = data.summary
    assert s.teacher == "GSM8K's human-written worked solutions" and "teacher: GSM8K's human-written worked solutions" in str(s)
    assert s.source == f"{tmp_path/'gsm8k'} (a local copy of openai/gsm8k/main)"
    assert s.final == {'train': 36, 'valid': 4, 'test': 3} and s.splits['test'].read == 4
    assert s.splits['test'].dropped == {'answer has several numbers': 1} and 'dropped from test: 1 (answer has several numbers)' in str(s)
    row = data['test'][0]  # i = 100: 1,200 eggs, 1,195 left
    assert row == dict(id='test-1', input='A shop packs 100 boxes of 12 eggs and sells 5 eggs. How many eggs are left?', label='1195',
                       rationale='The boxes hold 100 * 12 = 1200 eggs.\nAfter selling 5, 1200 - 5 = 1195 eggs are left.',
                       teacher_label=None, choices=None)  # on test the worked solution is the gold answer, not a teacher's
    assert s.splits['train'].rationales == 40 and s.splits['train'].teacher_acc == 1.0 and s.splits['test'].teacher_acc is None

def test_multiarith(tmp_path):
    d = hub_copy(tmp_path/'multiarith', {  # no README.md: the file names are the splits
        'train.json': [dict(question=f'Mia has {i} cards and buys 3 packs of 2. How many cards does she have?', final_ans=str(i + 6)) for i in range(20)],
        'test.json': [dict(question='Leo had 9 kites and lost 2. How many are left?', final_ans='7'),
                      dict(question='Half of 5 apples?', final_ans='2.5')]})
    data = load_data('multiarith', data_dir=d)
    assert data.summary.final == {'train': 18, 'valid': 2, 'test': 2}
    assert data['test']['label'] == ['7', '2.5'] and data['test']['rationale'] == [None, None]
    assert data.summary.teacher is None and data.summary.splits['test'].teacher_acc is None

def test_svamp_from_a_copy_of_the_hub_repository(tmp_path):
    "SVAMP is a paper task: its --data_dir is the paper's layout, or a copy of ChilleD/SVAMP's files, read by the Hub's loader."
    rec = lambda i: dict(ID=f'chal-{i}', Body=f'Jack had {i + 8} pens. He gave 3 pens to his sister.', Question='How many pens does Jack have now?',
                         Equation=f'( {i + 8}.0 - 3.0 )', Answer=float(i + 5), Type='Subtraction')
    d = hub_copy(tmp_path/'svamp', {'train.json': [rec(i) for i in range(20)], 'test.json': [rec(100), rec(101)]})
    data = load_data('svamp', data_dir=d)
    assert data['test']['label'] == ['( 108.0 - 3.0 )', '( 109.0 - 3.0 )'] and 'ChilleD/SVAMP' in data.summary.source
    assert answer_correct('svamp', '108 - 3', data['test'][0]['label'])

def test_asdiv_one_split_and_dropped_answers(tmp_path):
    answers = [f'{n} (apples)' for n in range(1, 21)] + ['2:3', '12 (boys);9 (girls)', 'Tom', '1,250 (dollars)']
    recs = [dict(body='A basket holds some apples.', question='How many apples are in it?', solution_type='Addition',
                 answer=a, formula='1+1=2') for a in answers]
    data = load_data('asdiv', data_dir=hub_copy(tmp_path/'asdiv', {'asdiv/validation-00000-of-00001.parquet': recs}, ASDIV_README))
    s = data.summary
    assert s.splits['train'].read == 24
    assert s.splits['train'].dropped == {'answer is a ratio': 1, 'answer has several numbers': 1, 'answer has no number': 1}
    for line in ['dropped from train: 1 (answer is a ratio)', 'dropped from train: 1 (answer has several numbers)',
                 'dropped from train: 1 (answer has no number)']: assert line in str(s)
    assert sum(s.final.values()) == 21
    assert s.notes[0].startswith('valid: ') and s.notes[1].startswith('test: ') and 'carved from train' in s.notes[1]
    rows = [r for split in data.values() for r in split]
    assert {r['input'] for r in rows} == {'A basket holds some apples.\nHow many apples are in it?'}
    assert sorted(int(r['label']) for r in rows) == [*range(1, 21), 1250]

def test_copies_of_the_same_name_are_never_read_stale(tmp_path):
    "`datasets` keys its cache of a local folder by its name and README.md alone: each copy must still load its own rows."
    a = load_data('gsm8k', data_dir=gsm8k_copy(tmp_path/'a'/'gsm8k', test=(1,)))
    b = load_data('gsm8k', data_dir=gsm8k_copy(tmp_path/'b'/'gsm8k', test=(2, 3)))
    assert (a.summary.final['test'], b['test']['label']) == (1, ['19', '31'])

def test_copy_without_its_readme_is_a_clear_error(tmp_path):
    d = gsm8k_copy(tmp_path/'gsm8k')
    (d/'README.md').unlink()
    with pytest.raises(DataError, match=r"could not load .*a local copy of openai/gsm8k/main.*README\.md included"):
        load_data('gsm8k', data_dir=d)
    with pytest.raises(DataError, match='nope: no such folder'): load_data('asdiv', data_dir=tmp_path/'nope')

def test_cli_data_gsm8k(tmp_path):
    res = cli('data', '--dataset', 'gsm8k', '--data_dir', gsm8k_copy(tmp_path/'gsm8k'), '--output_dir', tmp_path/'out',
              env={**OFFLINE, 'HF_DATASETS_CACHE': str(tmp_path/'cache')})
    assert res.returncode == 0, res.stderr
    assert "teacher: GSM8K's human-written worked solutions" in res.stdout and 'final: train 36, valid 4, test 3' in res.stdout
    first = json.loads((tmp_path/'out'/'test.jsonl').read_text().splitlines()[0])
    assert first['label'] == '1195' and first['teacher_label'] is None and first['rationale'].endswith('1200 - 5 = 1195 eggs are left.')

def test_cli_malformed_gsm8k_record(tmp_path):
    bad = {'question': 'How many eggs?', 'answer': 'There are 12 eggs.'}  # no '#### <number>' line
    d = gsm8k_copy(tmp_path/'gsm8k', extra_test=[bad])
    msg = one_line_error(cli('data', '--dataset', 'gsm8k', '--data_dir', d, env={**OFFLINE, 'HF_DATASETS_CACHE': str(tmp_path/'cache')}))
    assert msg == (f"distill-sbs data: error: {d} (a local copy of openai/gsm8k/main) [test] record 4: "
                   "field 'answer' has no '#### <number>' line (it ends 'There are 12 eggs.')")

def test_cli_offline_without_data_dir(tmp_path):
    msg = one_line_error(cli('data', '--dataset', 'asdiv', env={**OFFLINE, 'HF_DATASETS_CACHE': str(tmp_path/'cache')}))
    assert 'could not load EleutherAI/asdiv/asdiv on the Hugging Face Hub' in msg and 'pass --data_dir with a local copy' in msg

@pytest.mark.parametrize('task', ['gsm8k', 'multiarith', 'asdiv'])
def test_numbers_scored_by_value(task):
    for pred in ['1250', '1,250', '$1,250.', '1250.0', '1250 dollars', '1,250 (dollars)', '(1000 + 250)']: assert answer_correct(task, pred, '1250'), pred
    for pred in ['1251', '1,25', '1250 or 1251', 'twelve hundred', '', None, "__import__('os').system('true')"]:
        assert not answer_correct(task, pred, '1250'), pred
    assert answer_correct(task, '12.5%', '12.5') and answer_correct(task, '-3', '-3') and not answer_correct(task, '3', '-3')

def test_equation_tasks_keep_their_rule():
    assert answer_correct('svamp', '( 8.0 - 3.0 )', '(8 - 3)') and answer_correct('arith', '5', '5')
    assert not answer_correct('svamp', '5 pens', '(8 - 3)') and not answer_correct('arith', '1,250', '1250')
    assert numeric_value('9 (apples)') == 9 and numeric_value('3 or 4') is None

@pytest.mark.parametrize('task', ['gsm8k', 'multiarith', 'asdiv'])
def test_prompts_parse_and_score(task):
    p = PROMPTS[task]
    assert 3 <= len(p.shots) <= 4 and p.stop == ['\nQ:']
    for s in p.shots:
        rationale, label = PARSERS[task](s.answer)
        assert rationale and numeric_value(label) is not None and s.answer.endswith(f'So the answer is {label}.')
    assert PARSERS[task]('12 * 100 = 1,200 and 1,200 + 50 = 1,250. So the answer is $1,250.\n\nQ: next')[1] == '$1,250'

@pytest.mark.parametrize('n', [3, 4])
def test_arith_n_steps(n):
    data = load_data('arith', n_steps=n, n_train=100, n_test=20)
    assert data.summary.source.startswith(f'built-in {n}-step arithmetic')
    assert {r.count(' = ') for r in data['train']['rationale'] if r is not None} == {n}
    assert all(q.count(' and then ') == n - 1 for q in data['test']['input'])
