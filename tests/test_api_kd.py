"""Token-level distillation from a teacher behind an API, with another tokenizer (chapter 2c's `ApiLogprobs`, chapter 4's
`--teacher_logprobs`): the alignment on hand-made token sequences whose right answer is known; `distill-sbs teach
--logprobs 5` against the loopback stand-in, then `distill-sbs train` on what it wrote, for a task-prefix and a
rationale-first student; the real T5 and Qwen2.5 tokenizers; and the bad inputs, one line each with nothing written."""
import json, math, re
import pytest
from datasets import Dataset, DatasetDict, disable_progress_bars
from conftest import SHARED, cli, ok, refused
from distill_sbs.collator import TaskPrefixCollator, tokenize_tasks
from distill_sbs.cot import CotSettings, ExemplarPool, make_recipe
from distill_sbs.records import FEATURES
from distill_sbs.data import load_data
from distill_sbs.kd_align import ApiLogprobs, StudentVocab, align_tokens, certain, in_student_ids, read_logprobs, token_texts
from distill_sbs.kd_teachers import TeacherError
from distill_sbs.kd import TeacherTokens, kd_loss
from distill_sbs.loopback import LoopbackLLM
from distill_sbs.students import load_student
from distill_sbs.training import run_history

disable_progress_bars()

# (teacher tokens, student tokens, the right alignment)
CASES = {
    'identical': (['Omar', ' has', ' 3', ' apples', '.'], ['Omar', ' has', ' 3', ' apples', '.'], [0, 1, 2, 3, 4]),
    'student splits a word': (['Lena', ' has', ' apples'], ['Lena', ' has', ' app', 'les'], [0, 1, None, None]),
    'teacher merges digits': ([' 12', ' apples'], [' 1', '2', ' apples'], [None, None, 1]),
    'student merges digits': ([' 1', '2', ' apples'], [' 12', ' apples'], [None, 2]),
    'a space token of its own': (['Omar', ' has', ' 3'], [' Omar', ' has', ' ', '3'], [0, 1, None, 2]),
    'extra whitespace': (['Omar', ' has', ' ', '3', '\n'], ['Omar', 'has', ' 3', ' '], [0, 1, 3, None]),
    'missing whitespace': (['Omar', 'has', '3'], [' Omar', ' has', ' 3', '\n\n'], [0, 1, 2, None]),
    'inside a longer text': (['Ana', ' has', ' 2', '.', ' So', ' the', ' answer', ' is', ' 2', '.'], [' has', ' 2', '.'], [1, 2, 3]),
    'one word differs': (['So', ' the', ' answer', ' is', ' 7', '.'], ['So', ' the', ' answer', ' is', ' 8', '.'], [0, 1, 2, 3, None, 5]),
    'differs and split': (['Lena', ' sells', ' 2', ',', ' so', ' 3', ' left'], ['Lena', ' sell', 's', ' 2', ',', ' so', ' 4', ' left'],
                          [0, None, None, 2, 3, 4, None, 6]),
    'student has an extra word': (['a', ' b', ' c'], ['a', ' b', ' x', ' c'], [0, 1, None, 2]),
    'student lacks a word': (['a', ' b', ' x', ' c'], ['a', ' b', ' c'], [0, 1, 3]),
    'repeated words, one differs': (['2', ' +', ' 2', ' =', ' 4'], ['2', ' +', ' 2', ' =', ' 5'], [0, 1, 2, 3, None]),
    'no teacher tokens': ([], ['a', ' b'], [None, None]),
    'no student tokens': (['a'], [], []),
    'both empty': ([], [], []),
    'only whitespace': ([' ', '\n'], [' '], [None]),
}

@pytest.mark.parametrize('name', CASES)
def test_alignment_on_hand_made_tokens(name):
    teacher, student, want = CASES[name]
    assert align_tokens(teacher, student) == want

def test_alignment_is_monotone_and_one_to_one():
    "Each teacher token serves at most one student token, in order, and always one with the same characters."
    teacher, student = ['x', ' the', ' the', ' y', ' the'], ['the', ' the', ' z', ' the', ' the']
    got = align_tokens(teacher, student)
    hits = [j for j in got if j is not None]
    assert hits == sorted(set(hits)) and all(teacher[j].strip() == student[i].strip() for i, j in enumerate(got) if j is not None)

@pytest.fixture(scope='module')
def tiny_tokenizers():
    texts = [t for c in ('input', 'rationale', 'label') for t in load_data('arith', n_train=100, n_test=10)['train'][c] if t]
    return load_student('tiny', texts=texts, quiet=True)[1], load_student('tiny', quiet=True)[1]

def test_token_texts_join_to_the_text(tiny_tokenizers):
    for tok in tiny_tokenizers:
        ids = tok('Lena has 3 - 2 = 1 apple. Café!')['input_ids']
        pieces = token_texts(tok, ids)
        assert pieces[-1] is None and len(pieces) == len(ids)  # the end of sequence: no teacher writes it
        assert ''.join(p for p in pieces if p).strip() == tok.decode(ids, skip_special_tokens=True).strip()

def test_alternatives_in_the_student_vocabulary(tiny_tokenizers):
    tok = tiny_tokenizers[0]
    vocab, three = StudentVocab(tok), tok.convert_tokens_to_ids('3')
    token = [' 3', math.log(0.5), [[' 3', math.log(0.5)], [' 4', math.log(0.2)], [' 4', math.log(0.1)], [' zebra', math.log(0.1)]]]
    ids, logp, tail, n, mapped = in_student_ids(three, '3', token, vocab)
    assert tok.convert_ids_to_tokens(ids) == ['3', '4'] and (n, mapped) == (4, 3)
    assert math.isclose(math.exp(logp[1]), 0.3) and math.isclose(math.exp(tail), 0.2)  # ' zebra' is no student token: in the tail
    assert vocab.id_of(' zebra') is None and StudentVocab(tok).text_of is vocab.text_of  # read once per tokenizer
    ids, logp, tail = certain(three)
    assert ids == [three] and math.isclose(math.exp(logp[0]) + math.exp(tail), 1)

def test_padding_adds_nothing_to_the_forward_kl():
    import torch
    torch.manual_seed(0)
    logits, targets = torch.randn(1, 2, 10), torch.tensor([[3, 5]])
    base = TeacherTokens(ids=torch.tensor([[3, 1], [5, 2]]), logp=torch.tensor([[-0.5, -1.5], [-0.2, -2.0]]).float(), tail=torch.tensor([-1.4, -3.0]))
    pad = TeacherTokens(ids=torch.tensor([[3, 1, 3, 3], [5, 2, 5, 5]]), logp=torch.tensor([[-0.5, -1.5, -math.inf, -math.inf], [-0.2, -2.0, -math.inf, -math.inf]]),
                        tail=base.tail, forward_only=True)
    assert torch.allclose(kd_loss(logits, targets, base), kd_loss(logits, targets, pad), atol=1e-6)
    with pytest.raises(ValueError, match='only the forward KL'): kd_loss(logits, targets, pad, 'jsd')

def test_row_ids_are_the_rows_tokenize_tasks_kept(tiny_tokenizers):
    "Rows without a rationale (or teacher label, for llm), and a cot row whose rationale already says its answer, are left out; `id` names the rest."
    rows = [dict(id=f'r{i}', input=f'Q {i}?', label=str(i), rationale=None if i % 3 == 0 else f'Step {i}.' + (' So the answer is 1.' if i == 4 else ''),
                 teacher_label=None if i == 5 else str(i), choices=None) for i in range(10)]
    data = DatasetDict({s: Dataset.from_list(rows, features=FEATURES) for s in ('train', 'valid')})
    tok = tiny_tokenizers[1]
    for model_type, label_type, want in [('task_prefix', 'gt', [1, 2, 4, 5, 7, 8]), ('task_prefix', 'llm', [1, 2, 4, 7, 8]),
                                         ('cot', 'gt', [1, 2, 5, 7, 8]), ('cot', 'llm', [1, 2, 7, 8])]:
        recipe = make_recipe(model_type, CotSettings(cot_formats='zs_cot'))
        tokenized = tokenize_tasks(data, tok, model_type, label_type, rows=True, recipe=recipe)
        assert tokenized['train']['id'] == [f'r{i}' for i in want], (model_type, label_type)

@pytest.fixture(scope='module')
def taught(tmp_path_factory):
    "`distill-sbs teach --logprobs 5` against the loopback stand-in: a small arithmetic set with the teacher's tokens beside it."
    out = tmp_path_factory.mktemp('taught')/'out'
    with LoopbackLLM() as llm:
        ok(cli('teach', '--model', 'stand-in', '--base_url', llm.openai_url, '--output_dir', out, '--no_progress',
               '--dataset', 'arith', '--n_train', 100, '--n_test', 10, '--logprobs', 5))
    assert (out/'train_logprobs.jsonl').exists()
    return out

def test_tokens_come_in_batch_order(taught, tiny_tokenizers):
    tok = tiny_tokenizers[0]
    data = load_data('generic', data_dir=str(taught))
    for model_type, task, cols in (('task_prefix', 'rationale', 'expl'), ('cot', 'label', 'pred')):
        recipe = make_recipe(model_type, CotSettings(), ExemplarPool.from_data(data, 'generic'))
        tokenized = tokenize_tasks(data, tok, model_type, rows=True, recipe=recipe, max_input_length=512, max_rationale_length=96)
        api = ApiLogprobs(taught/'train_logprobs.jsonl', tokenized, tok)
        batch = TaskPrefixCollator(tok)([tokenized['train'][i] for i in (5, 0, 3)])
        tt = api.tokens(batch, task, batch['row'])
        labels = batch[cols]['labels']
        assert len(tt) == int((labels != -100).sum()) and tt.forward_only
        assert (tt.ids[:, 0] == labels[labels != -100]).all(), 'the first id of each token is its target'
        s = api.summary()
        assert s['aligned'] + sum(s['no_teacher'].values()) == s['tokens'] and s['coverage'] > 0.6, s
        with pytest.raises(ValueError, match="teaches the"): api.tokens(batch, 'label' if task == 'rationale' else 'rationale', batch['row'])

def test_rows_without_a_line_are_counted(taught, tmp_path, tiny_tokenizers):
    tok = tiny_tokenizers[0]
    lines = (taught/'train_logprobs.jsonl').read_text().splitlines()
    (tmp_path/'half.jsonl').write_text('\n'.join(lines[::2]) + '\n')
    tokenized = tokenize_tasks(load_data('generic', data_dir=str(taught)), tok, rows=True, max_input_length=128, max_rationale_length=96)
    s = ApiLogprobs(tmp_path/'half.jsonl', tokenized, tok).summary()
    assert s['rows_with_line'] == len(lines[::2]) < s['rows'] and s['no_teacher']['row without a line'] > 0
    assert s['aligned'] + sum(s['no_teacher'].values()) == s['tokens']
    (tmp_path/'bad.jsonl').write_text(lines[0] + '\n{"id": "x", "tokens": 5}\n')
    with pytest.raises(TeacherError, match='line 2 is not a line of'): read_logprobs(tmp_path/'bad.jsonl')

FAST = ['--batch_size', 8, '--max_steps', 3, '--eval_steps', 3, '--logging_steps', 1, '--gen_max_len', 4, '--no_log', '--max_rationale_length', 64]

def _coverage(stdout):
    m = re.search(r'coverage: [\d,]+ of [\d,]+ \w+ tokens have a teacher token \(([\d.]+)%\)', stdout)
    assert m, stdout[-3000:]
    return float(m.group(1)) / 100

@pytest.mark.parametrize('model_type, kd_on', [('task_prefix', 'rationale'), ('cot', 'label')])
def test_train_from_the_teachers_logprobs(taught, tmp_path, model_type, kd_on):
    run = tmp_path/'run'
    res = ok(cli('train', '--dataset', 'generic', '--data_dir', taught, '--teacher_logprobs', taught/'train_logprobs.jsonl',
                 '--model_type', model_type, '--kd_on', kd_on, *FAST, '--output_dir', run))
    assert _coverage(res.stdout) > 0.6
    logs = [h for h in run_history(run) if f'kd_{kd_on}_loss' in h]
    assert len(logs) == 3 and all(math.isfinite(h[f'kd_{kd_on}_loss']) and h[f'kd_{kd_on}_loss'] > 0 for h in logs)
    assert json.loads((run/'train_config.json').read_text())['kd_weight'] == 1.0

@pytest.mark.parametrize('flags, says', [
    (['--model_type', 'standard', '--kd_on', 'label'], 'a --model_type standard student writes no rationale'),
    (['--kd_on', 'rationale', '--kd_loss', 'reverse_kl'], 'only forward_kl is defined'),
    (['--kd_on', 'rationale', '--teacher', 'tiny-large'], '--teacher and --teacher_logprobs: give one source'),
])
def test_bad_flags_get_one_line(taught, tmp_path, flags, says):
    run = tmp_path/'run'
    refused(cli('train', '--dataset', 'generic', '--data_dir', taught, '--teacher_logprobs', taught/'train_logprobs.jsonl',
                *flags, '--output_dir', run), says, 'train')
    assert not run.exists()

@pytest.mark.parametrize('settings, says', [
    (dict(kd_on='rationale', kd_temperature=2.0), 'cannot be re-softened'),
    (dict(kd_on='both'), '--kd_on both: --teacher_logprobs teaches'),  # left out, --kd_on is the one it can teach (test_training)
    (dict(model_type='cot', kd_on='both'), 'use --kd_on label'),
    (dict(model_type='cot', kd_on='rationale'), 'use --kd_on label'),
    (dict(kd_on='rationale', teacher_logits='x'), '--teacher_logits and --teacher_logprobs: give one source'),
    (dict(kd_on='rationale', kd_on_policy=0.5), 'a --teacher_logprobs file holds only the training set'),
])
def test_bad_settings_are_refused_by_name(taught, settings, says):
    from distill_sbs.multitask import ConfigError, TrainConfig
    with pytest.raises(ConfigError, match=re.escape(says)): TrainConfig(teacher_logprobs=str(taught/'train_logprobs.jsonl'), **settings)

def test_a_file_for_other_data_gets_one_line(taught, tmp_path):
    other = tmp_path/'other_logprobs.jsonl'
    other.write_text(''.join(json.dumps({**json.loads(l), 'id': 'other-' + json.loads(l)['id']}) + '\n'
                             for l in (taught/'train_logprobs.jsonl').read_text().splitlines()))
    run = tmp_path/'run'
    line = refused(cli('train', '--dataset', 'generic', '--data_dir', taught, '--teacher_logprobs', other, '--kd_on', 'rationale',
                       *FAST, '--output_dir', run), 'it was written for other data', 'train')
    assert str(other) in line
    assert not (run/'train_config.json').exists()
    refused(cli('train', '--dataset', 'generic', '--data_dir', taught, '--teacher_logprobs', tmp_path/'none.jsonl', '--kd_on', 'rationale',
                '--output_dir', run), 'no such file', 'train')

REAL = {'t5': 't5-tokenizer', 'qwen2.5': 'qwen2.5-tokenizer'}

@pytest.mark.parametrize('name', REAL)
@pytest.mark.parametrize('model_type', ['task_prefix', 'cot'])
def test_real_tokenizers(taught, name, model_type):
    "The stand-in teacher's tokens aligned to the T5 and Qwen2.5 tokenizers (skipped without `../shared`)."
    path = SHARED/'models'/REAL[name]
    if not path.is_dir(): pytest.skip(f'needs the {name} tokenizer in {path} (absent in a fresh clone elsewhere)')
    from transformers import AutoConfig, AutoTokenizer
    from distill_sbs.students import student_kind
    tok = AutoTokenizer.from_pretrained(path)
    kind = student_kind(AutoConfig.from_pretrained(SHARED/'models'/'qwen2.5-0.5b-config')) if name == 'qwen2.5' else None
    data = load_data('generic', data_dir=str(taught))
    recipe = make_recipe(model_type, CotSettings(), ExemplarPool.from_data(data, 'generic'))
    tokenized = tokenize_tasks(data, tok, model_type, rows=True, recipe=recipe, kind=kind, max_rationale_length=128)
    api = ApiLogprobs(taught/'train_logprobs.jsonl', tokenized, tok)
    print(name, model_type, api.coverage())
    s = api.summary()
    assert s['aligned'] + sum(s['no_teacher'].values()) == s['tokens']
    assert s['coverage'] > 0.6 and s['alternatives_coverage'] > 0.5, s
    assert s['no_teacher']['special token'] == s['rows']  # the end of sequence (or turn), once a row
