"""`distill-sbs train`: a whole tiny run, SIGKILL of the real program then --resume, two processes under torchrun, one
line per bad flag."""
import json, re, signal, subprocess, time
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, TrainerCallback
from conftest import SMALL, cli, error_line, ok, refused
from distill_sbs.multitask import TrainConfig, TrainError
from distill_sbs.training import train
from distill_sbs.training import last_checkpoint, run_history

def test_train_leaves_a_loadable_model(tiny_run):
    out = tiny_run
    names = {p.name for p in out.iterdir()}
    assert {'model.safetensors', 'config.json', 'tokenizer_config.json', 'run.json', 'train_config.json',
            'trainer_state.json', 'checkpoint-10', 'checkpoint-20', 'valid_predictions.jsonl', 'runs'} <= names
    assert list((out/'runs').rglob('events.out.tfevents*')), 'TensorBoard logs are on by default'
    run = json.loads((out/'run.json').read_text())
    assert run['steps'] == 20 and run['resumed_from'] is None
    assert run['best_valid_accuracy'] == max(h['eval_accuracy'] for h in run_history(out) if 'eval_accuracy' in h)
    model, tok = AutoModelForSeq2SeqLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    best = AutoModelForSeq2SeqLM.from_pretrained(out/run['best_checkpoint'])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), best.state_dict().values())), 'the saved model is the best checkpoint'
    ids = tok(['predict: Ann has 2 books.'], return_tensors='pt')
    assert model.generate(**ids, max_new_tokens=3).shape[0] == 1
    preds = [json.loads(l) for l in (out/'valid_predictions.jsonl').read_text().splitlines()]
    assert len(preds) == run['data']['final']['valid'] and all(p['rationale'] is not None for p in preds)

def _wait_for(path, proc, timeout=240):
    t = time.time()
    while not path.exists():
        assert proc.poll() is None, 'the run ended before its checkpoint'
        assert time.time() - t < timeout, f'no {path} after {timeout} s'
        time.sleep(0.1)

@pytest.mark.slow
def test_sigkill_then_resume(tmp_path):
    out, max_steps, lr, warmup = tmp_path/'run', 40, 3e-3, 5
    args = ['train', '--max_steps', max_steps, '--eval_steps', 10, '--lr', lr, '--warmup_steps', warmup, '--logging_steps', 1, *SMALL, '--output_dir', out]
    proc = subprocess.Popen(['distill-sbs', *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # the program is what gets killed
    try: _wait_for(out/'checkpoint-20'/'trainer_state.json', proc)
    finally: proc.send_signal(signal.SIGKILL); proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (out/'run.json').exists()
    killed_at = int(last_checkpoint(out).rsplit('-', 1)[1])
    assert 20 <= killed_at < max_steps

    refused(cli(*args), 'add --resume to continue it')  # a second run in the same folder
    ok(cli('train', '--output_dir', out, '--resume'))  # everything else comes from the saved run
    run = json.loads((out/'run.json').read_text())
    assert run['steps'] == max_steps and run['resumed_from'] == f'checkpoint-{killed_at}'
    AutoModelForSeq2SeqLM.from_pretrained(out)
    hist = [h for h in run_history(out) if 'loss' in h]
    steps = [h['step'] for h in hist]
    assert steps == list(range(1, max_steps + 1)), 'one log line a step, before and after the kill'
    first, after = hist[0]['loss'], next(h['loss'] for h in hist if h['step'] > killed_at)
    assert after < 0.5 * first, f'the loss continues ({after:.2f}) rather than restarting near {first:.2f}'
    for h in hist[warmup:]:  # the schedule carries on: linear decay to 0 at max_steps (a step logs the rate it used)
        assert h['learning_rate'] == pytest.approx(lr * (max_steps - h['step'] + 1) / (max_steps - warmup), rel=1e-4)

def test_incomplete_checkpoint_is_skipped(tmp_path):
    (tmp_path/'checkpoint-10').mkdir(); (tmp_path/'checkpoint-10'/'trainer_state.json').write_text('{}')
    (tmp_path/'checkpoint-20').mkdir(); (tmp_path/'checkpoint-20'/'model.safetensors').write_text('half')
    assert last_checkpoint(tmp_path) == str(tmp_path/'checkpoint-10')

@pytest.mark.slow
def test_two_processes_on_cpu(tmp_path):
    out = tmp_path/'run'
    res = subprocess.run(['torchrun', '--nproc_per_node', '2', '--no-python', 'distill-sbs', 'train', '--max_steps', '6',
                          '--eval_steps', '3', *map(str, SMALL), '--output_dir', str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    run = json.loads((out/'run.json').read_text())
    assert run['hardware']['processes'] == 2 and run['steps'] == 6
    assert res.stdout.count('best validation accuracy') == 1, 'only the first process reports and writes'
    AutoModelForSeq2SeqLM.from_pretrained(out)
    last = run_history(out)[-1]
    n_train = run['data']['final']['train']  # a few rows without rationales are left out: within the tolerance
    assert last['epoch'] == pytest.approx(6 * 8 * 2 / n_train, rel=0.1), 'each step saw both processes\' batches'

@pytest.mark.parametrize('flags,says', [
    (['--dataset', 'cqaa'], "--dataset 'cqaa' is not one of"),
    (['--alpha', '1.5'], '--alpha must be in [0, 1]'),
    (['--data_dir', 'no/such/folder'], '--data_dir no/such/folder: no such file or folder'),
    (['--from_pretrained', './no/such/model'], '--from_pretrained ./no/such/model: no such model folder'),
    (['--aplha', '0.3'], "unknown setting '--aplha' (did you mean '--alpha'?)"),
    (['--lr', 'fast'], "--lr: invalid float value: 'fast'"),
])
def test_bad_flags_get_one_line(tmp_path, flags, says):
    assert says in error_line(cli('train', *flags, '--output_dir', tmp_path/'run'), 'train')
    assert not (tmp_path/'run').exists(), 'nothing is written before the flags are checked'

def test_help_lists_the_papers_flags():
    res = ok(cli('train', '--help'))
    for flag in ['--from_pretrained', '--label_type', '--model_type', '--grad_steps', '--output_rationale', '--bf16', '--resume']:
        assert flag in res.stdout

class _OutOfMemory(TrainerCallback):
    def on_step_begin(self, *a, **kw): raise torch.OutOfMemoryError('CUDA out of memory. Tried to allocate 2.00 GiB')

def test_out_of_memory_says_what_to_change(tmp_path):
    cfg = TrainConfig(max_steps=2, eval_steps=1, n_train=50, n_test=5, batch_size=8, no_log=True, output_dir=str(tmp_path/'run'))
    with pytest.raises(TrainError, match=r'a batch of 8 does not fit .*--batch_size 4 --grad_steps 2'): train(cfg, callbacks=[_OutOfMemory()])

class _PoisonAfter(TrainerCallback):
    "Make one weight NaN at the end of step `step`, as a bad batch or a broken teacher file would."
    def __init__(self, step): self.step = step
    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step == self.step:
            with torch.no_grad(): next(model.parameters()).fill_(float('nan'))

def test_a_nan_loss_stops_the_run_and_resume_starts_from_the_last_good_checkpoint(tmp_path):
    "A non-finite loss is one line naming the step and the term; nothing NaN is saved; `--resume` continues from the last good checkpoint."
    out = tmp_path/'run'
    cfg = TrainConfig(max_steps=6, eval_steps=2, n_train=60, n_test=5, batch_size=8, no_log=True, output_dir=str(out))
    with pytest.raises(TrainError, match=r'^step 4: label_loss is nan; stopped before it could update the weights'): train(cfg, callbacks=[_PoisonAfter(3)])
    assert not (out/'model.safetensors').exists() and not (out/'run.json').exists(), 'no final model, no finished run'
    assert last_checkpoint(out).endswith('checkpoint-2')
    good = AutoModelForSeq2SeqLM.from_pretrained(last_checkpoint(out))
    assert all(torch.isfinite(p).all() for p in good.parameters()), 'every checkpoint on disk is from before the NaN'
    run = train(TrainConfig(**{**cfg.__dict__, 'resume': True}))
    assert run['steps'] == 6 and run['resumed_from'] == 'checkpoint-2'
    assert all(torch.isfinite(p).all() for p in AutoModelForSeq2SeqLM.from_pretrained(out).parameters())

@pytest.mark.parametrize('flags,says', [
    (['--learning_rate', '1e-3'], "unknown setting '--learning_rate': here it is --lr"),
    (['--num_train_epochs', '3'], "unknown setting '--num_train_epochs': here it is --max_steps: runs are counted in optimizer steps, not epochs"),
    (['--seed', '1'], "unknown setting '--seed': here it is --run"),
    (['--model_name_or_path', 'google/flan-t5-base'], "here it is --from_pretrained"),
    (['--gradient_accumulation_steps', '2'], "here it is --grad_steps"),
    (['--per_device_train_batch_size', '8'], "here it is --batch_size"),
    (['--kd_loss', 'jsd'], '--kd_loss jsd: it shapes the distillation term, which needs a teacher'),
    (['--kd_on', 'label', '--kd_temperature', '2'], '--kd_temperature 2.0, --kd_on label: they shape the distillation term, which needs a teacher'),
], ids=['learning_rate', 'num_train_epochs', 'seed', 'model_name_or_path', 'gradient_accumulation_steps', 'per_device_train_batch_size',
        'kd_loss-without-teacher', 'kd-settings-without-teacher'])
def test_the_names_users_bring_and_settings_that_would_be_ignored(tmp_path, flags, says):
    "transformers' names get this project's name, never a hint at a setting that means something else; KD settings without a teacher are refused, not ignored."
    line = error_line(cli('train', *flags, '--output_dir', tmp_path/'run'), 'train')
    assert says in line and 'n_train' not in line, line
    assert not (tmp_path/'run').exists()

@pytest.mark.parametrize('command,default', [('train', 'runs/train'), ('teacher-logits', 'runs/teacher_logits'), ('experiment', 'runs/experiment')])
def test_each_command_has_its_own_help(command, default):
    "`--help` names the command, its own description and its own default folder; teacher-logits lists only what it reads."
    out = ok(cli(command, '--help')).stdout
    assert out.startswith(f'usage: distill-sbs {command} ') and f'(default: {default})' in re.sub(r'\s+', ' ', out)
    assert ('--lr' in out) == (command != 'teacher-logits') and ('--top_k' in out) and ('--model_type' in out) == (command != 'experiment')

def test_teacher_logits_refuses_training_flags_and_a_folder_of_something_else(tmp_path):
    assert '--lr is a setting `distill-sbs teacher-logits` does not use' in error_line(cli('teacher-logits', '--teacher', 'tiny-large', '--lr', '1'), 'teacher-logits')
    run = tmp_path/'run'; run.mkdir(); (run/'run.json').write_text('{}'); (run/'model.safetensors').write_bytes(b'weights')
    line = error_line(cli('teacher-logits', '--teacher', 'tiny-large', '--output_dir', run), 'teacher-logits')
    assert 'holds other files (model.safetensors, run.json)' in line and '--overwrite' in line
    assert sorted(p.name for p in run.iterdir()) == ['model.safetensors', 'run.json'], 'nothing touched'

def test_teacher_logprobs_pick_the_kd_target_they_can_teach(tmp_path):
    "With --teacher_logprobs, --kd_on defaults to what an API teacher's logprobs teach: the rationale's tokens, wherever the recipe writes them."
    f = tmp_path/'train_logprobs.jsonl'; f.write_text('')
    assert TrainConfig(teacher_logprobs=str(f)).kd_on == 'rationale'
    assert TrainConfig(teacher_logprobs=str(f), model_type='cot').kd_on == 'label'
    assert TrainConfig().kd_on == 'both'

def test_logits_for_other_data_with_a_tiny_student_say_why(tmp_path):
    "A tiny student's vocabulary comes from its data: logits written for other data are refused with that reason, not only 'another tokenizer'."
    ok(cli('teacher-logits', '--teacher', 'tiny-large', '--n_train', 100, '--n_test', 5, '--batch_size', 8, '--output_dir', tmp_path/'tl'))
    line = refused(cli('train', '--teacher_logits', tmp_path/'tl', '--n_train', 150, '--n_test', 5, '--max_steps', 2, '--no_log',
                       '--output_dir', tmp_path/'run'), 'another tokenizer', 'train')
    assert 'another tokenizer' in line and "vocabulary is built from its training data" in line and '--n_train' in line
    assert not (tmp_path/'run').exists()
