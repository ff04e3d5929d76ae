"""The multitask loss and trainer on a tiny random T5 with the byte-level tokenizer (and a tiny BART): the loss is the
α-mix of the task losses, both ways of computing it agree, training lowers it, and evaluation scores what the student
generates; one step of the `Trainer` is one step of the plain loop; the settings are one object, its KD part built by name."""
import dataclasses
import pytest, torch
from datasets import DatasetDict
from distill_sbs.answers import answer_correct
from distill_sbs.data import load_data
from distill_sbs.collator import TaskPrefixCollator, tokenize_tasks
from distill_sbs.inference import Student
from distill_sbs.kd import KDSettings
from distill_sbs.multitask import ConfigError, TrainConfig, make_trainer, plain_loop
from distill_sbs.students import tiny_student
import distill_sbs.multitask as multitask

@pytest.fixture(scope='module')
def setup():
    data = load_data('arith', n_train=200, n_test=40)
    model, tok = tiny_student(d_model=64, layers=2)
    model.eval()
    tokd = tokenize_tasks(data, tok)
    batch = TaskPrefixCollator(tok)([tokd['train'][i] for i in range(6)])
    return data, model, tok, tokd, batch

@pytest.fixture
def settings(tmp_path):
    "A test's `TrainConfig`: no logs, and a folder of the test's own (a run's default is runs/train); seed 42, the `Trainer`'s default."
    return lambda **kw: TrainConfig(**{'no_log': True, 'output_dir': str(tmp_path), 'run': 42, **kw})

@pytest.mark.parametrize('alpha', [0.0, 0.3, 0.5, 1.0])
def test_loss_is_alpha_mix_of_task_losses(setup, settings, alpha):
    data, model, tok, tokd, batch = setup
    trainer = make_trainer(model, tok, tokd, settings(alpha=alpha, max_steps=1))
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch)
        by_hand = alpha * model(**batch['pred']).loss + (1 - alpha) * model(**batch['expl']).loss
    assert torch.allclose(loss, by_hand, atol=1e-6)

def test_fast_and_straightforward_agree(setup, settings):
    data, model, tok, tokd, batch = setup
    plain = make_trainer(model, tok, tokd, settings(max_steps=1), fast=False)
    fast = make_trainer(model, tok, tokd, settings(one_pass=True, max_steps=1), fast=True)
    with torch.no_grad(): a, b = plain.compute_loss(model, batch), fast.compute_loss(model, batch)
    assert torch.allclose(a, b, atol=1e-5), (a, b)
    assert fast.args.train_sampling_strategy == 'group_by_length' and plain.args.train_sampling_strategy == 'random'

def test_standard_ignores_rationales(setup, settings):
    data, model, tok, tokd, batch = setup
    std = tokenize_tasks(data, tok, model_type='standard')
    scrambled = data.map(lambda r: {'rationale': 'nonsense'})
    assert std['train']['input_ids'] == tokenize_tasks(scrambled, tok, model_type='standard')['train']['input_ids']
    assert 'expl_input_ids' not in std['train'].column_names
    b = TaskPrefixCollator(tok)([std['train'][i] for i in range(4)])
    trainer = make_trainer(model, tok, std, settings(model_type='standard', max_steps=1))
    with torch.no_grad(): assert torch.allclose(trainer.compute_loss(model, b), model(**b).loss)
    with pytest.raises(ValueError, match="tokenised for model_type 'standard'"): make_trainer(model, tok, std, settings(max_steps=1))

@pytest.fixture(scope='module')
def trained(setup, tmp_path_factory):
    "A tiny student (seed 1) trained 30 steps, with its loss on the setup's batch before and after: it answers something now."
    data, _, tok, tokd, batch = setup
    model, _ = tiny_student(d_model=64, layers=2, seed=1)
    out = tmp_path_factory.mktemp('trained')  # a module's fixture outlives each test's tmp_path
    cfg = TrainConfig(max_steps=30, batch_size=16, lr=3e-3, warmup_steps=0, logging_steps=10, run=42, no_log=True, output_dir=str(out))
    with torch.no_grad(): before = make_trainer(model, tok, tokd, cfg).compute_loss(model.eval(), batch).item()
    trainer = make_trainer(model.train(), tok, tokd, cfg, disable_tqdm=True)
    trainer.train()
    with torch.no_grad(): after = trainer.compute_loss(model.eval(), batch).item()
    return model, trainer, before, after

def test_a_few_steps_reduce_loss(trained):
    model, trainer, before, after = trained
    assert after < before / 2, (before, after)
    logged = [l for l in trainer.state.log_history if 'rationale_loss' in l]
    assert len(logged) == 3 and logged[-1]['label_loss'] < logged[0]['label_loss']

def half_its_own(model, tok, rows, max_len=4):
    """Validation rows whose accuracy is known before evaluating: the even rows labelled with the student's own answers,
    the odd ones with an answer it never gives. Returns the rows and that accuracy."""
    answers = Student(model, tok).answer(list(rows['input']), 'predict', max_len, 64)
    labels = [a if i % 2 == 0 else 'an answer it never gives' for i, a in enumerate(answers)]
    right = sum(answer_correct('arith', a, a) for a in answers[::2])
    assert right > len(answers) // 4, f'the student should answer something: {answers[:6]}'
    return rows.map(lambda r, i: {'label': labels[i]}, with_indices=True), round(right / len(answers), 4)

def valid_loss(trainer, model, tok, tokd, batch_size=20) -> float:
    "The validation loss by hand: the loss of each validation batch, averaged over the rows."
    valid = [tokd['valid'][i] for i in range(len(tokd['valid']))]
    with torch.no_grad():
        losses = [(trainer.compute_loss(model, TaskPrefixCollator(tok)(valid[j:j + batch_size])).item(), len(valid[j:j + batch_size]))
                  for j in range(0, len(valid), batch_size)]
    return sum(l * n for l, n in losses) / len(valid)

def test_evaluation_scores_the_generated_answers(setup, trained, settings):
    data, _, tok, tokd, batch = setup
    model = trained[0]
    rows, expected = half_its_own(model, tok, data['valid'])
    trainer = make_trainer(model, tok, tokd, settings(dataset='arith', max_steps=1, gen_max_len=4, batch_size=20), eval_rows=rows)
    metrics = trainer.evaluate()
    assert metrics['eval_accuracy'] == expected and metrics['eval_tokens_per_answer'] <= 4
    assert metrics['eval_loss'] == pytest.approx(valid_loss(trainer, model.eval(), tok, tokd), rel=1e-3)

def test_bad_alpha(setup):
    data, model, tok, tokd, batch = setup
    with pytest.raises(ValueError, match='alpha must be in'): make_trainer(model, tok, tokd, TrainConfig(alpha=1.5))

def test_bart_student_trains(setup, settings):
    "Any AutoModelForSeq2SeqLM: a tiny random BART with the same byte-level tokenizer."
    from transformers import BartConfig, BartForConditionalGeneration
    data, _, tok, tokd, batch = setup
    cfg = BartConfig(vocab_size=len(tok), d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                     decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=512,
                     pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
                     decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=None)
    torch.manual_seed(0)
    bart = BartForConditionalGeneration(cfg).eval()
    plain = make_trainer(bart, tok, tokd, settings(max_steps=1), fast=False)
    stacked = make_trainer(bart, tok, tokd, settings(one_pass=True, max_steps=1))
    with torch.no_grad(): assert torch.allclose(plain.compute_loss(bart, batch), stacked.compute_loss(bart, batch), atol=1e-5)
    with torch.no_grad(): before = plain.compute_loss(bart.eval(), batch).item()
    trainer = make_trainer(bart.train(), tok, tokd, settings(dataset='arith', max_steps=20, batch_size=16, lr=3e-3, warmup_steps=0, gen_max_len=4),
                           per_device_eval_batch_size=50, disable_tqdm=True)
    trainer.train()
    with torch.no_grad(): after = trainer.compute_loss(bart.eval(), batch).item()
    assert after < 0.75 * before, (before, after)  # 5.96 to 3.42 when written
    metrics = trainer.evaluate()
    assert metrics['eval_loss'] == pytest.approx(valid_loss(trainer, bart.eval(), tok, tokd, 50), rel=1e-3) and metrics['eval_tokens_per_answer'] <= 4
    assert len(trainer.explain(['What is 1 + 1?'], max_new_tokens=5)) == 1

def test_generate_texts_keeps_order(setup):
    from distill_sbs.inference import generate_texts
    data, model, tok, tokd, batch = setup
    texts = ['a', 'a much longer input text', 'mid length']
    together = generate_texts(model, tok, texts, max_new_tokens=3, batch_size=2)
    assert together == [generate_texts(model, tok, [t], max_new_tokens=3)[0] for t in texts]

def test_a_plain_step_is_the_trainers_step(setup, settings):
    "One step of `plain_loop` and one of the `Trainer`, from the same weights (seed 2) on the same batch: the same loss and the same weights."
    data, _, tok, tokd, _ = setup
    one = DatasetDict(train=tokd['train'].select(range(8)))
    cfg = settings(max_steps=1, batch_size=8, lr=3e-3, warmup_steps=0)  # no warm-up: the linear schedule's first step is at the full rate
    by_trainer, by_hand = tiny_student(d_model=64, layers=2, seed=2)[0], tiny_student(d_model=64, layers=2, seed=2)[0]
    trainer = make_trainer(by_trainer, tok, one, cfg, fast=False, train_sampling_strategy='sequential', disable_tqdm=True)
    args = trainer.args
    assert (args.max_grad_norm, args.weight_decay, args.adam_beta1, args.adam_beta2, args.adam_epsilon) == (1.0, 0.0, 0.9, 0.999, 1e-8), 'what plain_loop assumes'
    loss = trainer.train().training_loss
    hand = plain_loop(by_hand, [TaskPrefixCollator(tok)([one['train'][i] for i in range(8)])], cfg.alpha, cfg.lr)
    torch.testing.assert_close(torch.tensor(hand[0]), torch.tensor(loss))
    start, moved = tiny_student(d_model=64, layers=2, seed=2)[0], 0
    for (name, p), q, p0 in zip(by_trainer.named_parameters(), by_hand.parameters(), start.parameters()):
        torch.testing.assert_close(p, q, msg=name)
        moved += not torch.equal(p, p0)
    assert moved > 10, 'the step moved the weights'

def test_kd_settings_are_built_by_name(monkeypatch):
    "Every `KDSettings` field comes from the `TrainConfig` flag of its name (kd_ + name, or the name), so reordering either dataclass changes nothing."
    flags = {f.name for f in dataclasses.fields(TrainConfig)}
    source = {k: next((n for n in (f'kd_{k}', k) if n in flags), None) for k in (f.name for f in dataclasses.fields(KDSettings))}
    assert [k for k, n in source.items() if n is None] == ['chunk'], 'only the memory knob has no flag'
    values = dict(kd_weight=0.25, kd_loss='jsd', kd_beta=0.75, kd_skew=0.2, kd_temperature=2.0, kd_on='label', kd_on_policy=0.5, kd_fused=False, ce_weight=0.5)
    assert set(values) == {n for n in source.values() if n}, 'a distinct value for every flag the term reads'
    expected = {k: values[n] for k, n in source.items() if n}
    kd = TrainConfig(teacher='tiny-large', **values).kd
    assert {k: getattr(kd, k) for k in expected} == expected and kd.chunk == KDSettings().chunk
    reordered = [(f.name, f.type, dataclasses.field(default=f.default)) for f in reversed(dataclasses.fields(KDSettings))]
    monkeypatch.setattr(multitask, 'KDSettings', dataclasses.make_dataclass('KDSettings', reordered))  # the same settings, another order
    assert dataclasses.asdict(TrainConfig(teacher='tiny-large', **values).kd) == dataclasses.asdict(kd)
    assert TrainConfig().kd is None, 'no teacher, no term'
    with pytest.raises(ConfigError, match='needs a teacher'): TrainConfig(kd_loss='jsd')  # and no term's settings without one

def test_teacher_and_settings_go_together(setup, settings):
    data, model, tok, tokd, batch = setup
    with pytest.raises(ValueError, match='give both or neither'): make_trainer(model, tok, tokd, settings(teacher='tiny-large'))
