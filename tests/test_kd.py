"""Token-level distillation through the command line: `distill-sbs teacher-logits` killed with SIGKILL and rerun
writes the files of an unbroken run; training from them loads no teacher and, with k the whole vocabulary, gives
the online teacher's loss; a causal student on-policy; the Qwen2.5 tokenizer's padded vocabulary; ANLI in the
paper's layout; and the bad inputs, one line each with nothing half-written."""
import json, math, signal, subprocess, time
import pytest
from transformers import AutoTokenizer
from conftest import SMALL, cli, ok, refused

LOGITS_SMALL = [a for a in SMALL if a != '--no_log']  # teacher-logits writes no TensorBoard logs: it refuses --no_log like every flag it would ignore
from test_paper_layout import _layout
from distill_sbs import training
from distill_sbs.multitask import TrainConfig
from distill_sbs.training import train
from distill_sbs.training import run_history

@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
    "`tiny-large` (a wider T5 with `tiny`'s vocabulary) finetuned a few steps on the built-in task: a teacher folder."
    out = tmp_path_factory.mktemp('teacher')/'run'
    ok(cli('train', '--from_pretrained', 'tiny-large', '--model_type', 'standard', '--max_steps', 20, '--eval_steps', 20,
           '--gen_max_len', 4, *SMALL, '--output_dir', out))
    return out

def _files(d): return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob('*')) if p.is_file()}

@pytest.mark.slow
def test_sigkill_then_rerun_writes_the_unbroken_files(tmp_path):
    args = ['teacher-logits', '--teacher', 'tiny-large', '--n_train', 1000, '--batch_size', 2, '--top_k', 8]  # 889 rows in 4 shards
    ok(cli(*args, '--output_dir', tmp_path/'whole'))
    out = tmp_path/'killed'
    proc = subprocess.Popen(['distill-sbs', *map(str, args), '--output_dir', str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not (out/'shard-00001').exists() and proc.poll() is None and time.time() < deadline: time.sleep(0.02)
    proc.send_signal(signal.SIGKILL); proc.wait(30)
    done = sorted(p.name for p in out.glob('shard-*') if not p.name.endswith('.tmp'))
    assert 1 <= len(done) < 4, f'the kill should land mid-way, found {done}'
    res = ok(cli(*args, '--output_dir', out))
    assert 'per token' in res.stdout
    assert not list(out.glob('*.tmp'))
    assert _files(out) == _files(tmp_path/'whole')

def test_offline_loss_of_the_whole_vocabulary_is_the_online_loss(tmp_path, teacher, monkeypatch):
    V = len(AutoTokenizer.from_pretrained(teacher))
    ok(cli('teacher-logits', '--teacher', teacher, '--top_k', V, *LOGITS_SMALL, '--output_dir', tmp_path/'all'))
    common = dict(n_train=200, n_test=20, batch_size=8, no_log=True, max_steps=2, logging_steps=1, eval_steps=2, gen_max_len=4)
    online = train(TrainConfig(teacher=str(teacher), output_dir=str(tmp_path/'online'), **common))
    monkeypatch.setattr(training, 'open_teacher', lambda *a, **k: pytest.fail('training from a logits file loaded the teacher'))
    offline = train(TrainConfig(teacher_logits=str(tmp_path/'all'), output_dir=str(tmp_path/'offline'), **common))
    first = lambda run: next(h for h in run_history(run) if 'kd_loss' in h)
    on, off = first(tmp_path/'online'), first(tmp_path/'offline')
    for key in ('kd_label_loss', 'kd_rationale_loss', 'label_loss', 'rationale_loss'):
        assert math.isclose(on[key], off[key], rel_tol=2e-3, abs_tol=2e-4), (key, on[key], off[key])
    assert on['kd_loss'] > 0 and online['steps'] == offline['steps'] == 2

def test_a_file_for_other_data_or_tokenizer_is_refused(tmp_path, teacher):
    logits = tmp_path/'tl'
    res = ok(cli('teacher-logits', '--teacher', teacher, *LOGITS_SMALL, '--output_dir', logits))
    assert '122.' in res.stdout or 'per token' in res.stdout
    run = tmp_path/'run'
    refused(cli('train', '--teacher_logits', logits, *SMALL, '--max_rationale_length', 16, '--output_dir', run),
            'was made for another tokenised training data')
    refused(cli('train', '--teacher_logits', logits, '--n_train', 100, '--n_test', 20, '--no_log', '--output_dir', run),
            'was made for another tokenizer')
    refused(cli('train', '--teacher_logits', logits, *SMALL, '--kd_temperature', 2, '--output_dir', run), 'temperature 1.0')
    assert not (run/'train_config.json').exists()
    refused(cli('teacher-logits', '--teacher', teacher, *LOGITS_SMALL, '--top_k', 5, '--output_dir', logits), 'k: 20 there, 5 now')

@pytest.mark.parametrize('flags, says', [
    (['--kd_on_policy', 0.5], '--kd_on_policy 0.5 needs --teacher'),
    (['--kd_on_policy', 0.5, '--teacher_logits', '.'], 'holds only the training set'),
    (['--teacher', 'tiny-large', '--teacher_logits', '.'], 'give one source'),
    (['--teacher', 'tiny-large', '--kd_loss', 'mse'], "--kd_loss 'mse' is not one of"),
    (['--teacher', 'tiny-large', '--model_type', 'standard', '--kd_on', 'rationale'], 'has no separate rationale task'),
    (['--teacher', 'tiny-large', '--one_pass'], '--one_pass'),
])
def test_bad_kd_flags_get_one_line(tmp_path, flags, says):
    refused(cli('train', *flags, '--output_dir', tmp_path/'run'), says)
    assert not (tmp_path/'run').exists()

def test_different_tokenizers_and_k_too_large(tmp_path, teacher):
    line = refused(cli('train', '--teacher', teacher, '--n_train', 100, '--n_test', 20, '--no_log', '--output_dir', tmp_path/'run'),
                   'has another tokenizer than the student')  # chapter 2e's path, which teaches the rationale's tokens only
    assert str(teacher) in line and 'tiny' in line and '--kd_on rationale' in line  # names both, and what to do
    assert not (tmp_path/'run'/'train_config.json').exists()
    refused(cli('train', '--teacher', teacher, '--from_pretrained', 'tiny-causal', *SMALL, '--output_dir', tmp_path/'run'),
            'has another tokenizer than the student tiny-causal')
    refused(cli('teacher-logits', '--teacher', teacher, *LOGITS_SMALL, '--top_k', 100_000, '--output_dir', tmp_path/'tl'),
            '--top_k 100000 is larger than the vocabulary')
    assert not (tmp_path/'tl').exists()

def test_causal_student_on_policy_with_a_causal_teacher(tmp_path, causal_run):
    res = ok(cli('train', '--from_pretrained', 'tiny-causal', '--teacher', causal_run, '--kd_on_policy', 0.5, '--kd_loss', 'reverse_kl',
                 '--max_steps', 8, '--eval_steps', 8, '--logging_steps', 1, '--gen_max_len', 4, *SMALL, '--output_dir', tmp_path/'s'))
    assert "50% of batches on the student's own samples" in res.stdout
    logs = [h for h in run_history(tmp_path/'s') if 'kd_loss' in h]
    assert len(logs) == 8 and all(math.isfinite(h['kd_loss']) and h['kd_label_loss'] >= 0 for h in logs)
    assert 0 < sum(h['on_policy'] for h in logs) < 8  # some batches on-policy, some not

@pytest.mark.slow
def test_qwen_twin_offline_with_its_padded_vocabulary(tmp_path, qwen_twin):
    "The twin's embedding has 151,936 rows for a 151,665-token tokenizer: both sides are cut to the tokenizer."
    logits = tmp_path/'tl'
    small = ['--n_train', 20, '--n_test', 4, '--batch_size', 4, '--no_log', '--max_rationale_length', 16]
    ok(cli('teacher-logits', '--teacher', qwen_twin, *[a for a in small if a != '--no_log'], '--output_dir', logits))
    meta = json.loads((logits/'teacher_logits.json').read_text())
    assert meta['vocab_size'] == len(AutoTokenizer.from_pretrained(qwen_twin)) < 151_936
    ok(cli('train', '--from_pretrained', qwen_twin, '--teacher_logits', logits, '--kd_loss', 'jsd', '--kd_beta', 0.9,
           '--max_steps', 2, '--eval_steps', 2, '--logging_steps', 1, '--gen_max_len', 4, *small, '--output_dir', tmp_path/'s'))
    assert all(math.isfinite(h['kd_loss']) for h in run_history(tmp_path/'s') if 'kd_loss' in h)

def test_anli_in_the_papers_layout(tmp_path):
    recs = [dict(uid=f'a{i}', premise=f'The cat sat on mat {i}.', hypothesis=f'A cat is on mat {i % 4}.', label=i % 3, reason='') for i in range(24)]
    outs = [f'Mat {i} is {"the same" if i % 3 == 0 else "another"}. So the answer is {["entailment", "neutral", "contradiction"][i % 3]}.' for i in range(24)]
    data_dir = _layout(tmp_path/'data', 'anli1', {s: (recs, outs) for s in ('train', 'valid', 'test')}, 'palm')
    task = ['--dataset', 'anli1', '--data_dir', data_dir, '--batch_size', 8, '--no_log']
    ok(cli('teacher-logits', '--teacher', 'tiny-large', *task[:-1], '--output_dir', tmp_path/'tl'))  # all but --no_log
    ok(cli('train', '--teacher_logits', tmp_path/'tl', '--metric', 'accuracy', '--max_steps', 2, '--eval_steps', 2,
           '--gen_max_len', 4, *task, '--output_dir', tmp_path/'s'))
    run = json.loads((tmp_path/'s'/'run.json').read_text())
    assert run['config']['dataset'] == 'anli1' and run['steps'] == 2 and run['best_valid_metric'] is not None

def test_the_same_time_comparison_reads_each_runs_curve(tmp_path):
    "Chapter 5b's same-time numbers come from a run folder's log alone: seconds a step without the validations, and the last validation reached by a time."
    from distill_sbs.kd_experiment import at_time, valid_curve
    from distill_sbs.evaluation import t_interval
    d = tmp_path/'run'; d.mkdir()
    (d/'trainer_state.json').write_text(json.dumps({'log_history': [{'step': 5, 'loss': 1.0}, {'step': 10, 'eval_accuracy': 0.2, 'eval_runtime': 2.0},
                                                                    {'step': 20, 'eval_accuracy': 0.5, 'eval_runtime': 2.0}]}))
    (d/'run.json').write_text(json.dumps({'train_seconds': 24.0, 'steps': 20}))
    curve = valid_curve(d)  # 24 s less 4 s of validating, over 20 steps: a second a step
    assert curve == [(10.0, 0.2), (20.0, 0.5)]
    assert [at_time(curve, s) for s in (9.9, 10, 19, 60)] == [0.0, 0.2, 0.2, 0.5]
    mean, half = t_interval([0.5, 0.6, 0.7])  # a 95% t-interval: t(2 degrees of freedom) = 4.30
    assert mean == pytest.approx(0.6) and half == pytest.approx(4.30 * 0.1 / 3 ** 0.5)
    assert t_interval([0.4]) == (0.4, 0.0)

@pytest.mark.parametrize('student', ['tiny', 'tiny-causal'])
def test_the_fused_loss_trains_as_the_whole_logits_did(tmp_path, teacher, causal_run, student):
    "The same run with chapter 2c's fused, completion-only loss and with the model's whole logits: the same losses at every step (so the same gradients before them)."
    common = dict(from_pretrained=student, teacher=str(teacher if student == 'tiny' else causal_run), kd_loss='jsd', kd_temperature=2.0,
                  n_train=200, n_test=20, batch_size=8, no_log=True, max_steps=3, logging_steps=1, eval_steps=3, gen_max_len=4)
    for fused in (True, False): train(TrainConfig(kd_fused=fused, output_dir=str(tmp_path/f'{fused}'), **common))
    runs = [[h for h in run_history(tmp_path/f'{fused}') if 'kd_loss' in h] for fused in (True, False)]
    assert len(runs[0]) == len(runs[1]) == 3
    for a, b in zip(*runs):
        for key in ('kd_label_loss', 'kd_rationale_loss', 'label_loss', 'rationale_loss'):
            assert math.isclose(a[key], b[key], rel_tol=1e-4, abs_tol=1e-6), (student, a['step'], key, a[key], b[key])

def test_a_teacher_with_another_tokenizer_teaches_through_the_rationale_text(tmp_path, causal_run):
    "A causal teacher (ChatML tokens) of a T5 student: chapter 2e's alignment, the coverage printed, the lines kept in the run's folder."
    common = ['--from_pretrained', 'tiny', '--teacher', causal_run, '--max_steps', 4, '--eval_steps', 4, '--logging_steps', 1, '--gen_max_len', 4, *SMALL]
    res = ok(cli('train', *common, '--kd_on', 'rationale', '--output_dir', tmp_path/'s'))
    assert 'has another tokenizer than the student' in res.stdout and 'coverage: ' in res.stdout
    lines = (tmp_path/'s'/'teacher_logprobs.jsonl').read_text().splitlines()
    assert lines and all(json.loads(l)['tokens'] for l in lines)
    logs = [h for h in run_history(tmp_path/'s') if 'kd_loss' in h]
    assert len(logs) == 4 and all(math.isfinite(h['kd_rationale_loss']) and h['kd_rationale_loss'] > 0 for h in logs)
    for flags, says in ((['--kd_on', 'both'], 'distil on those tokens with --kd_on rationale'),
                        (['--kd_on', 'rationale', '--kd_loss', 'jsd'], 'define only --kd_loss forward_kl at --kd_temperature 1'),
                        (['--kd_on', 'rationale', '--top_k', 100_000], '--top_k 100000 is larger than the vocabulary')):
        refused(cli('train', *common, *flags, '--output_dir', tmp_path/'r'), says)

@pytest.mark.slow
def test_smollm2_learns_from_a_qwen_teacher_token_by_token(tmp_path, smollm2, qwen_twin):
    "Two families, two tokenizers (SmolLM2's 49,152 tokens, Qwen2.5's 151,665), offline: the coverage printed and the distillation loss falling."
    res = ok(cli('train', '--from_pretrained', smollm2, '--teacher', qwen_twin, '--kd_on', 'rationale', '--ce_weight', 0, '--lr', 1e-3,
                 '--n_train', 24, '--n_test', 4, '--batch_size', 4, '--no_log', '--max_steps', 6, '--eval_steps', 6, '--logging_steps', 1,
                 '--gen_max_len', 4, '--max_rationale_length', 48, '--output_dir', tmp_path/'s'))
    assert 'coverage: ' in res.stdout
    kd = [h['kd_rationale_loss'] for h in run_history(tmp_path/'s') if 'kd_rationale_loss' in h]
    assert len(kd) == 6 and kd[-1] < kd[0], kd
