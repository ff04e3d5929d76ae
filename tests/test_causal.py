"""Decoder-only students through the whole pipeline: `tiny-causal` and a Qwen2.5 twin (the real tokenizer) through
`distill-sbs train/evaluate` and a real `distill-sbs serve` process, LoRA killed and resumed, the bad inputs, and the real
pretrained SmolLM2-135M-Instruct: it stops at its end-of-turn token, and its left-padded batches answer as it does one at
a time. (That it still stops, and answers with a number, after distilling is chapter 5a's check.)"""
import json, signal, subprocess, time
import httpx2 as httpx
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer
from conftest import SMALL, cli, ok, refused
from distill_sbs.data import load_data
from distill_sbs.collator import tokenize_tasks
from distill_sbs.inference import generate, load_run
from distill_sbs.serve import free_port, wait_for
from distill_sbs.students import CausalKind, StudentError, load_student, student_kind
from distill_sbs.training import last_checkpoint, run_history

def _serve(model_dir):
    "`distill-sbs serve` in a subprocess on a free loopback port; yields its URL."
    port = free_port()
    proc = subprocess.Popen(['distill-sbs', 'serve', '--model_dir', str(model_dir), '--port', str(port), '--dtype', 'float32'],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try: wait_for(f'http://127.0.0.1:{port}/health', 200, proc=proc, timeout=120)
    except RuntimeError as e: proc.kill(); pytest.fail(f'{e}:\n{proc.stdout.read()}')
    return proc, f'http://127.0.0.1:{port}'

def _batch_equals_one_at_a_time(url, questions):
    post = lambda qs: httpx.post(url + '/predict', json={'instances': qs}, timeout=120)
    together = post(questions)
    assert together.status_code == 200, together.text
    answers = [p['answer'] for p in together.json()['predictions']]
    assert answers == [post([q]).json()['predictions'][0]['answer'] for q in questions]
    return answers

@pytest.mark.parametrize('student', ['tiny-causal', pytest.param('qwen-twin', marks=pytest.mark.slow)])
def test_train_evaluate_serve(tmp_path, student, request):
    "The same flags as a T5 run (the session's `causal_run` for tiny-causal); the kind comes from the model's config."
    if student == 'tiny-causal': out = request.getfixturevalue('causal_run')
    else:
        out = tmp_path/'run'  # its 151,936-row vocabulary makes every token cost: fewer rows
        res = ok(cli('train', '--from_pretrained', request.getfixturevalue('qwen_twin'), '--max_steps', 8, '--eval_steps', 4, '--gen_max_len', 8,
                     '--lr', 3e-3, *SMALL, '--n_train', 100, '--n_test', 10, '--output_dir', out))
        assert '(causal,' in res.stdout
    assert student_kind(AutoModelForCausalLM.from_pretrained(out)).name == 'causal'
    run = json.loads((out/'run.json').read_text())
    assert run['steps'] == 8 and run['metric'] == 'accuracy'
    hist = run_history(out)
    assert any('label_loss' in h and 'rationale_loss' in h for h in hist), 'both task losses are logged'
    evals = [h for h in hist if 'eval_accuracy' in h]
    assert len(evals) == 2 and all(0 <= h['eval_stopped'] <= 1 and h['eval_tokens_per_answer'] <= 8 for h in evals)
    ok(cli('evaluate', out, '--output_dir', tmp_path/'eval', '--no_base'))
    res = json.loads((tmp_path/'eval'/'results.json').read_text())
    assert res['systems']['distilled']['n'] == run['config']['n_test'] and res['systems']['distilled']['tokens_per_answer'] <= 8
    proc, url = _serve(out)
    try: _batch_equals_one_at_a_time(url, list(load_data('arith', n_train=20, n_test=8)['test']['input']))
    finally: proc.terminate(); proc.wait(30)

@pytest.mark.slow
def test_lora_killed_then_resumed_ends_at_the_same_step(tmp_path):
    out, steps = tmp_path/'lora', 24
    cmd = ['distill-sbs', 'train', *map(str, ['--from_pretrained', 'tiny-causal', '--lora_r', 4, '--max_steps', steps,
                                               '--eval_steps', 8, '--gen_max_len', 4, *SMALL, '--output_dir', out])]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = time.time()
    try:
        while not (out/'checkpoint-8'/'trainer_state.json').exists():
            assert proc.poll() is None and time.time() - t < 240, 'no checkpoint-8'
            time.sleep(0.1)
    finally: proc.send_signal(signal.SIGKILL); proc.wait()
    killed_at = int(last_checkpoint(out).rsplit('-', 1)[1])
    assert (out/f'checkpoint-{killed_at}'/'adapter_model.safetensors').exists(), 'checkpoints hold the adapters'
    ok(cli('train', '--output_dir', out, '--resume'))
    run = json.loads((out/'run.json').read_text())
    assert run['steps'] == steps and run['resumed_from'] == f'checkpoint-{killed_at}'
    assert not (out/'adapter_config.json').exists() and (out/'model.safetensors').exists(), 'the final folder is a merged model'
    student = load_run(out)
    assert len(student.answer(['Ana has 3 apples.'], max_new_tokens=4)) == 1
    with pytest.raises(StudentError, match='LoRA adapter only'): load_student(last_checkpoint(out))

@pytest.mark.parametrize('flags, says', [
    (['--from_pretrained', 'tiny-causal', '--lora_r', 4, '--lora_target', 'nonexistent_proj'], '--lora_target nonexistent_proj: '),
    (['--lora_r', -1], '--lora_r must be 0 (off) or a rank'),
    (['--metric', 'bleu'], '--metric'),
])
def test_bad_flags_get_one_line(tmp_path, flags, says):
    refused(cli('train', *flags, '--max_steps', 1, *SMALL, '--output_dir', tmp_path/'r'), says, 'train')

def test_a_model_of_neither_kind_and_an_adapter_folder_are_refused(tmp_path):
    from transformers import ViTConfig
    ViTConfig().save_pretrained(tmp_path/'vit')
    refused(cli('train', '--from_pretrained', tmp_path/'vit', '--max_steps', 1, *SMALL, '--output_dir', tmp_path/'r'),
            "'vit' model is neither a seq2seq nor a causal")
    (tmp_path/'adapter').mkdir(); (tmp_path/'adapter'/'adapter_config.json').write_text('{}')
    refused(cli('train', '--from_pretrained', tmp_path/'adapter', '--max_steps', 1, *SMALL, '--output_dir', tmp_path/'r2'), 'LoRA adapter only')

def test_a_tokenizer_without_pad_token_or_chat_template(qwen_twin):
    tok = AutoTokenizer.from_pretrained(qwen_twin)
    tok.pad_token, tok.chat_template = None, None
    notes = CausalKind().prepare(tok)
    assert tok.pad_token == tok.eos_token and any('no pad token' in n for n in notes) and any('no chat template' in n for n in notes)
    kind = CausalKind()
    enc = kind.encode(tok, [kind.prompt(tok, 'What is 3 + 4?')], ['7'], 64, 8)
    assert tok.decode([t for t in enc['labels'][0] if t != -100]) == '7' + tok.eos_token

def test_truncation_is_counted_and_keeps_the_completion(qwen_twin):
    tok = AutoTokenizer.from_pretrained(qwen_twin)
    data = load_data('arith', n_train=40, n_test=10)
    model = AutoModelForCausalLM.from_pretrained(qwen_twin)
    tokd = tokenize_tasks(data, tok, max_input_length=30, max_rationale_length=6, kind=student_kind(model))
    assert tokd.report.truncated['train']['input'] == len(tokd['train']) and tokd.report.truncated['train']['rationale'] > 0
    eot = CausalKind().end_of_turn(tok)
    labels = [r['label'] for r in tokd.source['train'] if r['rationale'] is not None]  # rows without a rationale are left out
    for row, label in zip(tokd['train'], labels, strict=True):
        completion = [t for t in row['labels'] if t != -100]
        assert tok.decode(completion) == label + '<|im_end|>' and row['expl_labels'][-1] == eot
        assert tok.decode(row['input_ids']).endswith('<|im_start|>assistant\n' + label + '<|im_end|>')

# The real pretrained student. Its pad token is its end-of-turn token: the completion's last token must stay a target.
ARITH = load_data('arith', n_train=200, n_test=50)

@pytest.mark.slow
def test_smollm2_stops_at_end_of_turn_and_batches_agree(smollm2):
    model, tok = load_student(str(smollm2))
    kind = student_kind(model)
    assert tok.pad_token_id == kind.end_of_turn(tok), 'SmolLM2 pads with its end-of-turn token'
    enc = kind.encode(tok, [kind.prompt(tok, 'What is 3 + 4?')], ['7'], 1024, 256)
    assert enc['labels'][0][-2:] == [tok.convert_tokens_to_ids('7'), tok.pad_token_id], 'the end of turn is a target'
    prompts = [kind.prompt(tok, q, model_type='standard') for q in ARITH['test']['input']]
    # zero-shot it explains at length: most answers end on their own within 200 tokens (13 of 16 when measured)
    long = generate(model, tok, prompts[:16], max_new_tokens=200, batch_size=16)
    assert sum(long.stopped) >= 12, f'{sum(long.stopped)} of 16 zero-shot answers stopped on their own: {long.texts[:2]}'
    assert all(not t.endswith('<|im_end|>') and '<|im_start|>' not in t for t in long.texts), 'only the new tokens, decoded'
    # 32 questions, left-padded in batches of 16, against one at a time (the first 16 tokens of each answer; none differed when measured)
    batched = generate(model, tok, prompts[:32], max_new_tokens=16, batch_size=16).texts
    alone = [generate(model, tok, [p], max_new_tokens=16).texts[0] for p in prompts[:32]]
    differ = sum(a != b for a, b in zip(batched, alone))
    assert differ <= 1, f'{differ} of 32 left-padded answers differ from one at a time'

def test_free_text_labels_are_kept_by_rouge_l(tmp_path):
    "A generic task whose labels are sentences: ROUGE-L keeps the best checkpoint by default, and the report shows it."
    notes = ['fever and cough for three days', 'pain in the left knee after a fall', 'headache that gets worse at night']
    rec = lambda i, s: {'id': f'{s}-{i}', 'input': f'Patient {i} reports {notes[i % 3]}.', 'label': f'the patient has {notes[i % 3]}',
                        'rationale': f'The note says {notes[i % 3]}.'}
    data = tmp_path/'notes'; data.mkdir()
    for split, n in (('train', 60), ('valid', 9), ('test', 12)):
        (data/f'{split}.jsonl').write_text(''.join(json.dumps(rec(i, split)) + '\n' for i in range(n)))
    out = tmp_path/'run'
    ok(cli('train', '--from_pretrained', 'tiny-causal', '--dataset', 'generic', '--data_dir', data, '--max_steps', 6,
           '--eval_steps', 3, '--gen_max_len', 12, '--batch_size', 8, '--no_log', '--output_dir', out))
    run = json.loads((out/'run.json').read_text())
    assert run['metric'] == 'rouge_l' and run['best_valid_metric'] == max(h['eval_rouge_l'] for h in run_history(out) if 'eval_rouge_l' in h)
    ok(cli('evaluate', out, '--output_dir', tmp_path/'eval', '--no_base'))
    res = json.loads((tmp_path/'eval'/'results.json').read_text())
    assert res['metric'] == 'rouge_l' and 0 <= res['systems']['distilled']['rouge_l'] <= 1
    report = (tmp_path/'eval'/'report.md').read_text()
    assert 'ROUGE-L' in report and 'best validation rouge_l' in report
