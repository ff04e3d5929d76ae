"Bad requests to `distill-sbs evaluate` and `experiment`: one line naming the run and the setting, exit 2, nothing written; PaLM on CQA scored alike everywhere."
import json
from dataclasses import asdict
import pytest
from conftest import cli, error_line
from distill_sbs.multitask import TrainConfig

def _fake_run(path, **changes):
    "A run folder with a finished run's records but no model: enough for the checks made before any model loads."
    path.mkdir(parents=True)
    (path/'train_config.json').write_text(json.dumps(asdict(TrainConfig(output_dir=str(path), **changes))))
    (path/'run.json').write_text('{}')
    return path

def _err(argv): return error_line(cli(*argv), argv[0])

def test_runs_on_different_data_are_refused(tmp_path):
    a, b = _fake_run(tmp_path/'a'), _fake_run(tmp_path/'b', max_number=5)
    err = _err(['evaluate', str(a), str(b), '--output_dir', str(tmp_path/'out')])
    assert 'max_number=5' in err and str(b) in err and 'one test set' in err
    assert not (tmp_path/'out').exists()

def test_unfinished_run_and_non_run_are_named(tmp_path):
    unfinished = _fake_run(tmp_path/'u'); (unfinished/'run.json').unlink()
    err = _err(['evaluate', str(unfinished), '--output_dir', str(tmp_path/'out')])
    assert 'has not finished' in err and '--resume' in err
    (tmp_path/'empty').mkdir()
    assert 'no train_config.json' in _err(['evaluate', str(tmp_path/'empty'), '--output_dir', str(tmp_path/'out')])
    (unfinished/'run.json').write_text('{}'); (unfinished/'train_config.json').write_text('{not json')
    assert 'not valid JSON' in _err(['evaluate', str(unfinished), '--output_dir', str(tmp_path/'out')])

@pytest.mark.parametrize('argv, expect', [
    (['evaluate'], 'the following arguments are required'),
    (['evaluate', 'x', '--output_dir', 'o', '--batch_size', '0'], '--batch_size must be at least 1'),
    (['experiment', '--model_type', 'standard'], 'trains both'),
    (['experiment', '--alpha', '3'], 'alpha'),
])
def test_bad_flags_get_one_line(argv, expect, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert expect in _err(argv)
    assert not (tmp_path/'runs').exists()

def test_palm_on_cqa_scores_the_same_in_every_chapter(shared):
    "PaLM's CQA test labels: 78.3% by the one rule (normalised exact match), in chapter 0's summary and chapter 5's report; 77.2% by the paper's strict string match."
    from distill_sbs.answers import answer_correct
    from distill_sbs.data import load_data
    from distill_sbs.evaluation import Comparison
    data = load_data('cqa', data_dir=shared/'data')
    test = data['test']
    pairs = list(zip(test['teacher_label'], test['label']))
    assert len(pairs) == 1221
    assert round(sum(t == g for t, g in pairs) / len(pairs), 3) == 0.772  # the paper's rule, by hand
    assert round(sum(answer_correct('cqa', t, g) for t, g in pairs) / len(pairs), 3) == 0.783
    assert round(data.summary.splits['test'].teacher_acc, 3) == 0.783  # chapter 0
    rows = [dict(id=r['id'], input=r['input'], label=r['label'], choices=r['choices']) for r in test]
    report = Comparison('cqa', rows).add('teacher', list(test['teacher_label'])).results()
    assert report['systems']['teacher']['correct'] == data.summary.splits['test'].teacher_correct  # chapter 5

# ---- every system keeps its row, whatever its run's folder is called (issue 37)

def _train(out, *extra):
    "A finished tiny run in `out`: 4 steps on the built-in task, on the same test set as the `tiny_run` fixture."
    from conftest import SMALL, ok
    ok(cli('train', '--max_steps', 4, '--eval_steps', 4, *SMALL, *extra, '--output_dir', out))
    return out

def _evaluated(tmp_path, *runs):
    "`distill-sbs evaluate RUNS --no_base`: what it printed, results.json and the systems answering in predictions.jsonl."
    from conftest import ok
    res = ok(cli('evaluate', *runs, '--no_base', '--output_dir', tmp_path/'out'))
    results = json.loads((tmp_path/'out'/'results.json').read_text())
    predicted = [set(json.loads(l)['answers']) for l in (tmp_path/'out'/'predictions.jsonl').read_text().splitlines()]
    return res.stdout, results, predicted

def _simulated_teacher_accuracy(run) -> float:
    "The share of the test set the built-in task's simulated teacher gets right, from the data alone."
    from distill_sbs.answers import answer_correct
    from distill_sbs.data import DataSettings, load_data
    from distill_sbs.inference import run_config
    settings = DataSettings.of(run_config(run))
    test = load_data(settings)['test']
    return sum(answer_correct(settings.dataset, t, g) for t, g in zip(test['teacher_label'], test['label'])) / len(test)

def test_system_keys_keep_fixed_rows_and_usual_names():
    "No run takes a fixed row or another kind's name; runs of one kind get their folders, then parent/folder; KD shows in the name and label."
    from distill_sbs.evaluation import system_keys, system_name
    tp, kd = dict(model_type='task_prefix'), dict(model_type='standard', teacher_logits='l', kd_weight=1.0)
    assert system_keys({'r/distilled': tp, 'r/standard': dict(model_type='standard')}) == {
        'r/distilled': ('distilled', 'distilling step-by-step'), 'r/standard': ('standard', 'standard finetuning')}  # chapter 5a
    seed = {'s/standard': dict(model_type='standard'), 's/kd': kd, 's/distilled': tp, 's/distilled_kd': {**tp, 'teacher_logits': 'l', 'kd_weight': 1.0}, 's/teacher_model': tp}
    assert [k for k, _ in system_keys(seed).values()] == ['standard', 'kd', 'distilled', 'distilled_kd', 'teacher_model']  # chapter 5b
    keys = system_keys({'x/teacher': tp, 'y/base': tp, 'z/majority': tp, 'w/kd': tp})
    assert [k for k, _ in keys.values()] == ['x/teacher', 'y/base', 'z/majority', 'w/kd']
    assert len({label for _, label in keys.values()}) == 4
    assert system_name(dict(model_type='cot', teacher_logprobs='f.jsonl', kd_weight=None)) == 'cot_kd'
    assert system_name(dict(model_type='task_prefix', teacher='tiny-large', kd_weight=0.0)) == 'distilled'

def test_a_run_in_a_folder_named_teacher_keeps_the_teacher_row(tiny_run, tmp_path):
    "A distilling step-by-step run trained into `x/teacher`, evaluated beside another: the teacher's row stays the simulated teacher's, both runs keep theirs."
    run = _train(tmp_path/'x'/'teacher')
    out, res, predicted = _evaluated(tmp_path, run, tiny_run)
    systems = res['systems']
    assert systems['teacher']['accuracy'] == _simulated_teacher_accuracy(tiny_run) > 0.5, systems['teacher']  # 70% of these 20 questions
    assert systems['teacher']['label'] == 'teacher' and systems['teacher']['source'] != str(run)
    assert set(systems) == {'teacher', 'x/teacher', tiny_run.name, 'majority'}, set(systems)
    assert set(res['runs']) == {'x/teacher', tiny_run.name} and res['runs']['x/teacher']['dir'] == str(run)
    assert len({s['label'] for s in systems.values()}) == 4 and 'distilling step-by-step' in systems['x/teacher']['label']
    assert all(p == set(systems) for p in predicted)
    assert 'made distinct' in out and 'no run takes the teacher row' in out, out

def test_runs_whose_folders_share_a_name_keep_both_rows(tiny_run, tmp_path):
    "Two standard + KD runs in `a/kd` and `b/kd` (taught by the `tiny_run` student): two rows, two labels that say KD, a line that says so."
    a, b = (_train(tmp_path/p/'kd', '--model_type', 'standard', '--teacher', tiny_run) for p in 'ab')
    out, res, predicted = _evaluated(tmp_path, a, b)
    systems = res['systems']
    assert set(systems) == {'teacher', 'a/kd', 'b/kd', 'majority'}, set(systems)
    assert systems['a/kd']['label'] == 'standard + KD (a/kd)' and systems['b/kd']['label'] == 'standard + KD (b/kd)'
    assert {r['dir'] for r in res['runs'].values()} == {str(a), str(b)}
    assert all(p == set(systems) for p in predicted)
    assert "2 runs are standard + KD: their rows are made distinct" in out, out
