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
