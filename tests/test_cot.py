"""Rationale-first students (chapter 1f) through the command line: `train --model_type cot` for a T5 and a causal
student, `evaluate --shots` scoring every student zero-shot and in context with its cost, a cot student distilled
token by token, GSM8K from a local copy of the Hub layout, the real SmolLM2-135M-Instruct's zero-shot chain of
thought, and the bad inputs (a leaking exemplars file, an unknown format, rationales that already state their
answer), one line each with nothing written."""
import json
import pytest
from conftest import cli, ok, refused
from test_math_tasks import gsm8k_copy
from distill_sbs.cot import read_answer
from distill_sbs.data import load_data
from distill_sbs.inference import Student, load_run
from distill_sbs.training import run_history

THREE_STEPS = ['--n_steps', 3, '--n_train', 120, '--n_test', 12, '--batch_size', 8, '--no_log', '--max_rationale_length', 64]  # 3-step problems

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "A rationale-first tiny T5 (zero-shot and in-context formats) and a standard one, a few steps each."
    d = tmp_path_factory.mktemp('cot')
    fast = ['--lr', 3e-3]  # six steps: the higher rate, so the students learn when to stop
    ok(cli('train', '--model_type', 'cot', '--cot_formats', 'zs_cot=2,icl_cot', '--cot_shots', 1, '--max_steps', 6, '--eval_steps', 3,
           *fast, *THREE_STEPS, '--output_dir', d/'cot'))
    ok(cli('train', '--model_type', 'standard', '--max_steps', 6, '--eval_steps', 3, *fast, *THREE_STEPS, '--output_dir', d/'standard'))
    return d

def test_cot_run_records_what_it_wrote(runs):
    cfg = json.loads((runs/'cot'/'train_config.json').read_text())
    assert cfg['model_type'] == 'cot' and cfg['cot_formats'] == 'zs_cot=2,icl_cot' and cfg['gen_max_len'] == 64 + 32
    hist = run_history(runs/'cot')
    evals = [h for h in hist if 'eval_accuracy' in h]
    assert len(evals) == 2 and all(0 <= h['eval_no_answer'] <= 1 and h['eval_tokens_per_answer'] <= 96 for h in evals)
    preds = [json.loads(l) for l in (runs/'cot'/'valid_predictions.jsonl').read_text().splitlines()]
    assert preds and all('output' in p and p['prediction'] == read_answer(p['output']) for p in preds)
    student = load_run(runs/'cot')
    assert student.model_type == 'cot' and student.recipe.writes_rationale

def test_evaluate_with_shots_scores_every_student_both_ways(runs, tmp_path):
    ok(cli('evaluate', runs/'cot', runs/'standard', '--eval_shots', 2, '--output_dir', tmp_path/'eval'))
    res = json.loads((tmp_path/'eval'/'results.json').read_text())
    systems = res['systems']
    assert {'cot', 'cot@2', 'standard', 'standard@2', 'base', 'base@2', 'base_cot', 'base_cot@2', 'teacher', 'majority'} <= set(systems)
    assert systems['cot@2']['label'] == 'rationale-first, 2 exemplars'
    for name in ('cot', 'cot@2', 'standard', 'standard@2'):
        s = systems[name]
        assert s['n'] == 12 and s['answers_per_second'] > 0 and s['tokens_per_answer'] is not None and 0 <= s['no_answer'] <= 1
    report = (tmp_path/'eval'/'report.md').read_text()
    assert '| rationale-first, 2 exemplars |' in report and 'no answer' in report and 'answers per second' in report
    preds = [json.loads(l) for l in (tmp_path/'eval'/'predictions.jsonl').read_text().splitlines()]
    assert len(preds) == 12 and all(p['answers']['cot'] == read_answer(p['outputs']['cot']) for p in preds)
    assert 'standard' not in preds[0]['outputs']  # a label student's answer is what it wrote

def test_the_chapters_table_scores_every_system(runs):
    "Chapter 5c's table from one seed's runs: each system zero-shot and with an exemplar, no interval from one seed, and what an answer costs."
    from distill_sbs.cot_experiment import cot_table
    table = cot_table({'seed0/cot': runs/'cot', 'seed0/standard': runs/'standard'}, shots=1, batch_size=12)
    assert {'cot', 'cot@1', 'standard', 'standard@1', 'teacher', 'majority'} <= set(table.index)
    assert (table.seeds == 1).all() and (table.interval == 0).all()
    assert table.per_seed['cot'] == f"{table.accuracy['cot']:.1%}"
    assert table.tokens_per_answer['cot'] > 3 * table.tokens_per_answer['standard']  # a chain of thought before its answer

def _generic(d, test_extra=()):
    "Generic data: 60 worked training rows, and a test split of two of them (recased and repunctuated) and three new questions."
    rows = [{'id': f'r{i}', 'input': f'What is {i} plus {i % 7}?', 'rationale': f'{i} and {i % 7} more make {i + i % 7}.', 'label': str(i + i % 7)}
            for i in range(60)]
    rows[7]['label'] = '(a) 8'  # its answer sentence could not be read back: never shown with its chain of thought
    test = [{'input': 'WHAT IS 3 PLUS 3 ?', 'label': '6'}, {'input': 'what is 4 plus 4', 'label': '8'},
            *({'input': f'What is {i} plus 2?', 'label': str(i + 2)} for i in (100, 101, 102)), *test_extra]
    d.mkdir(parents=True, exist_ok=True)
    (d/'train.jsonl').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
    (d/'test.jsonl').write_text('\n'.join(json.dumps(r) for r in test) + '\n')
    return d

def test_in_context_questions_never_show_a_scored_question(tmp_path):
    "A test split that repeats training questions (other case, other punctuation): the pool leaves them out, counted, and no question is shown a scored one."
    from distill_sbs.cot import ExemplarPool, _key
    data = load_data('generic', data_dir=_generic(tmp_path/'data'))
    pool = ExemplarPool.from_data(data, 'generic')
    scored = {_key(q) for s in ('valid', 'test') for q in data[s]['input']}
    assert pool.left_out['also a valid or test question'] == 2  # valid was carved out of train: those rows left it
    shown = [e for q in data['test']['input'] for e in pool.draw(q, 3)] + [e for q in data['test']['input'] for e in pool.draw(q, 3, chains=True)]
    assert len(shown) == 30 and not {_key(e.input) for e in shown} & scored and {e.id for e in shown} <= set(data['train']['id'])
    assert not any(e.id == 'r7' for q in data['train']['input'] for e in pool.draw(q, 5, chains=True))
    out = tmp_path/'run'
    ok(cli('train', '--dataset', 'generic', '--data_dir', tmp_path/'data', '--model_type', 'standard', '--max_steps', 2, '--eval_steps', 2,
           '--eval_shots', 2, '--gen_max_len', 4, '--batch_size', 4, '--no_log', '--output_dir', out))
    res = ok(cli('evaluate', out, '--eval_shots', 2, '--no_base', '--output_dir', tmp_path/'eval'))
    assert "'also a valid or test question': " in res.stdout and 'standard@2' in json.loads((tmp_path/'eval'/'results.json').read_text())['systems']

def test_causal_cot_student(tmp_path):
    out = tmp_path/'run'
    ok(cli('train', '--from_pretrained', 'tiny-causal', '--model_type', 'cot', '--max_steps', 4, '--eval_steps', 4, '--eval_shots', 1,
           '--lr', 3e-3, *THREE_STEPS, '--output_dir', out))
    student = load_run(out)
    prompt = student.kind.prompt(student.tokenizer, student.recipe.ask('Ana has 2 apples.'), 'predict', 'cot')
    assert prompt.startswith('<|im_start|>user') and "Let's think step by step" in prompt
    hist = run_history(out)
    assert any('eval_no_answer' in h for h in hist)

def test_cot_student_distilled_token_by_token(tmp_path):
    "KD on a rationale-first student's one target (its chain of thought and answer), from a teacher beside it."
    out = tmp_path/'kd'
    res = ok(cli('train', '--model_type', 'cot', '--cot_formats', 'zs_cot', '--teacher', 'tiny-large', '--kd_on', 'label',
                 '--max_steps', 3, '--eval_steps', 3, '--gen_max_len', 8, *THREE_STEPS, '--output_dir', out))
    hist = run_history(out)
    assert any('kd_label_loss' in h for h in hist) and 'token-level distillation' in res.stdout

def test_gsm8k_local_copy_trains_a_cot_student(tmp_path):
    copy = gsm8k_copy(tmp_path/'gsm8k')
    out = tmp_path/'run'
    res = ok(cli('train', '--dataset', 'gsm8k', '--data_dir', copy, '--model_type', 'cot', '--cot_formats', 'zs_cot', '--max_steps', 2,
                 '--eval_steps', 2, '--gen_max_len', 8, '--batch_size', 4, '--no_log', '--output_dir', out,
                 env={'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}))
    assert "GSM8K's human-written worked solutions" in res.stdout
    assert json.loads((out/'run.json').read_text())['steps'] == 2

@pytest.mark.parametrize('flags, says', [
    (['--model_type', 'cot', '--cot_formats', 'zs_cot,few_shot'], "--cot_formats 'few_shot' is not one of"),
    (['--model_type', 'cot', '--cot_shots', 0], '--cot_shots must be at least 1'),
    (['--model_type', 'cot', '--kd_on', 'rationale', '--teacher', 'tiny-large'], 'use --kd_on label'),
])
def test_bad_flags_get_one_line(tmp_path, flags, says):
    refused(cli('train', *flags, *THREE_STEPS, '--output_dir', tmp_path/'x'), says)
    assert not (tmp_path/'x').exists()

def test_leaking_exemplars_file_is_refused_before_anything_is_written(tmp_path):
    test = load_data('arith', n_steps=3, n_train=120, n_test=12)['test']
    f = tmp_path/'exemplars.jsonl'
    f.write_text(json.dumps({'input': 'What is 1 + 1?', 'rationale': '1 + 1 = 2.', 'label': '2'}) + '\n'
                 + json.dumps({'input': test[4]['input'], 'rationale': 'Count them.', 'label': test[4]['label']}) + '\n')
    line = refused(cli('train', '--model_type', 'cot', '--exemplars', f, *THREE_STEPS, '--output_dir', tmp_path/'x'),
                   f"record 2 is the test question {test[4]['id']}")
    assert str(f) in line and not (tmp_path/'x').exists()

def test_a_run_s_exemplars_file_is_checked_again_when_it_is_evaluated(tmp_path):
    "`evaluate --shots` draws from the run's own `--exemplars`; edited since to hold a test question, it is refused."
    data = _generic(tmp_path/'data')
    f = tmp_path/'exemplars.jsonl'
    f.write_text(json.dumps({'input': 'What is 10 plus 10?', 'rationale': '10 + 10 = 20.', 'label': '20'}) + '\n'
                 + json.dumps({'input': 'What is 11 plus 1?', 'rationale': '11 + 1 = 12.', 'label': '12'}) + '\n')
    out = tmp_path/'run'
    ok(cli('train', '--dataset', 'generic', '--data_dir', data, '--model_type', 'standard', '--exemplars', f, '--eval_shots', 1,
           '--max_steps', 2, '--eval_steps', 2, '--gen_max_len', 4, '--batch_size', 4, '--no_log', '--output_dir', out))
    with f.open('a') as fh: fh.write(json.dumps({'input': 'What is 100 plus 2?', 'rationale': 'It is 102.', 'label': '102'}) + '\n')
    refused(cli('evaluate', out, '--eval_shots', 1, '--output_dir', tmp_path/'eval'), 'record 3 is the test question')
    assert not (tmp_path/'eval').exists()

def test_rationales_that_state_their_answer_are_left_out_and_counted(tmp_path):
    rows = [{'input': f'What is {i} + 1?', 'rationale': f'{i} plus one is {i + 1}.', 'label': str(i + 1)} for i in range(30)]
    for r in rows[:4]: r['rationale'] += f" So the answer is {r['label']}."
    (tmp_path/'train.jsonl').write_text('\n'.join(json.dumps(r) for r in rows) + '\n')
    res = ok(cli('train', '--dataset', 'generic', '--data_dir', tmp_path/'train.jsonl', '--model_type', 'cot', '--cot_formats', 'zs_cot',
                 '--max_steps', 2, '--eval_steps', 2, '--gen_max_len', 8, '--batch_size', 4, '--no_log', '--output_dir', tmp_path/'run'))
    assert "left out" in res.stdout and "its rationale already says 'So the answer is'" in res.stdout

@pytest.mark.slow
def test_smollm2_zero_shot_chain_of_thought_is_read(smollm2):
    "The real instruct model, asked zero-shot to think step by step: it stops on its own, and its answers are read or counted as none."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from distill_sbs.students import student_kind
    model, tok = AutoModelForCausalLM.from_pretrained(smollm2), AutoTokenizer.from_pretrained(smollm2)
    student_kind(model).prepare(tok)
    qs = list(load_data('arith', n_steps=3, n_train=20, n_test=6)['test']['input'])
    gen = Student(model, tok, 'cot').generations(qs, max_new_tokens=160, batch_size=6)
    assert sum(gen.stopped) >= 4, gen.texts  # an instruct model ends its turn
    assert all(a is None or a == read_answer(t) for a, t in zip(gen.answers, gen.texts))
    one = Student(model, tok, 'cot').generations(qs[:2], max_new_tokens=160, batch_size=1)
    assert one.texts == gen.texts[:2]  # left-padded batches answer as one at a time

def test_serving_a_cot_student_answers_with_its_chain_of_thought(runs):
    import httpx2 as httpx
    from test_causal import _serve
    proc, url = _serve(runs/'cot')
    try:
        health = httpx.get(url + '/health', timeout=30).json()
        assert health['model_type'] == 'cot'
        qs = list(load_data('arith', n_steps=3, n_train=20, n_test=4)['test']['input'])
        r = httpx.post(url + '/predict', json={'instances': qs, 'parameters': {'rationale': True}}, timeout=120)
        assert r.status_code == 200, r.text
        preds = r.json()['predictions']
        assert len(preds) == 4 and all(p['answer'] == read_answer(p['rationale']) for p in preds)
        plain = httpx.post(url + '/predict', json={'instances': qs}, timeout=120).json()['predictions']
        assert [p['answer'] for p in plain] == [p['answer'] for p in preds] and 'rationale' not in plain[0]
    finally: proc.terminate(); proc.wait(30)
