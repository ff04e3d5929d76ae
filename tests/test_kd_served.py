"""Chapter 2f's served teacher: the loopback stand-in serves a real model's `prompt_logprobs` the way vLLM does, and
`distill-sbs teacher-logits --teacher_url` writes what the same model in memory writes; `train --teacher_url` reads
it batch by batch; the servers that cannot do it are refused in one line with nothing half-written."""
import json
import numpy as np
import torch
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer
from conftest import SMALL, cli, ok, refused
from distill_sbs.kd_served import prompt_logprobs_route
from distill_sbs.kd_teachers import TopKLogits
from distill_sbs.hardware import native_bf16
from distill_sbs.loopback import LoopbackLLM
from distill_sbs.training import run_history

LOGITS = ['--n_train', 60, '--n_test', 4, '--batch_size', 8, '--top_k', 8, '--max_rationale_length', 32]

def served(folder, change=None, dtype=None):
    "The stand-in serving the causal model in `folder` as vLLM would (in the precision `open_teacher` loads it in memory), its replies changed by `change` if given."
    dtype = dtype or (torch.bfloat16 if native_bf16('cpu') else torch.float32)
    model, tok = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval(), AutoTokenizer.from_pretrained(folder)
    route = prompt_logprobs_route(model, tok)['/v1/completions']
    def answer(body): status, reply = route(body); return status, (change(reply) if change else reply)
    return LoopbackLLM(routes={'/v1/completions': answer})

def arrays(d):
    t = TopKLogits(d)
    return {task: t.tokens(target=task, rows=range(t.meta['rows'])) for task in t.meta['tasks']}

def test_served_top_k_is_the_in_memory_top_k(tmp_path, causal_run):
    ok(cli('teacher-logits', '--teacher', causal_run, *LOGITS, '--output_dir', tmp_path/'local'))
    with served(causal_run) as llm:
        res = ok(cli('teacher-logits', '--teacher', causal_run, '--teacher_url', llm.openai_url, *LOGITS, '--output_dir', tmp_path/'served'))
    assert 'ServedTeacher' in res.stdout or 'top 8' in res.stdout
    a, b = arrays(tmp_path/'served'), arrays(tmp_path/'local')
    for task in a:  # token by token, the same top 8 (a near-tie of this barely trained model may order two apart: a batch's padding moves the sums a little)
        assert (a[task].ids.numpy() == b[task].ids.numpy()).mean() > 0.95, task
        assert np.allclose(np.sort(a[task].logp.float().numpy()), np.sort(b[task].logp.float().numpy()), atol=2e-2), task  # bf16 where the CPU multiplies it
        assert np.allclose(a[task].tail.float().numpy(), b[task].tail.float().numpy(), atol=2e-2), task

def test_train_asks_a_served_teacher_batch_by_batch(tmp_path, causal_run):
    with served(causal_run) as llm:
        ok(cli('train', '--from_pretrained', 'tiny-causal', '--teacher', causal_run, '--teacher_url', llm.openai_url, '--top_k', 8,
               '--max_steps', 3, '--eval_steps', 3, '--logging_steps', 1, '--gen_max_len', 4, *SMALL, '--output_dir', tmp_path/'s'))
        asked = len(llm.log) if llm.log else None
    logs = [h for h in run_history(tmp_path/'s') if 'kd_loss' in h]
    assert len(logs) == 3 and all(h['kd_loss'] > 0 for h in logs)

def _no_prompt_logprobs(r): r['choices'][0].pop('prompt_logprobs'); return r
def _fewer(r):
    r['choices'][0]['prompt_logprobs'] = [None] + [{t: v for t, v in e.items() if v['rank'] <= 3 or v['rank'] > 8} for e in r['choices'][0]['prompt_logprobs'][1:]]
    return r
def _other_tokens(r):
    for e in r['choices'][0]['prompt_logprobs'][1:]:
        for v in e.values(): v['decoded_token'] = '§' + v['decoded_token']
    return r

@pytest.mark.parametrize('change, says', [(_no_prompt_logprobs, 'sent no prompt log-probabilities'), (_fewer, 'fewer than the --top_k 8'),
                                          (_other_tokens, "tokenizer is not the student's")], ids=['none', 'fewer', 'other-tokenizer'])
def test_a_server_that_cannot_teach_gets_one_line_and_nothing_is_half_written(tmp_path, causal_run, change, says):
    with served(causal_run, change) as llm:
        refused(cli('teacher-logits', '--teacher', causal_run, '--teacher_url', llm.openai_url, *LOGITS, '--output_dir', tmp_path/'o'), says)
    assert not list((tmp_path/'o').glob('shard-*'))

def test_bad_served_flags_get_one_line(tmp_path, causal_run):
    refused(cli('teacher-logits', '--teacher_url', 'http://127.0.0.1:9/v1', *LOGITS, '--output_dir', tmp_path/'a'), 'name the teacher as the server serves it with --teacher')
    refused(cli('teacher-logits', '--teacher', causal_run, '--teacher_url', 'http://127.0.0.1:9/v1', '--kd_temperature', 2, *LOGITS,
                '--output_dir', tmp_path/'b'), 'leave --kd_temperature at 1')
    refused(cli('teacher-logits', '--teacher', causal_run, '--teacher_url', 'http://127.0.0.1:9/v1', '--top_k', 100000, *LOGITS[:-4],
                '--output_dir', tmp_path/'c'), 'larger than the vocabulary')

@pytest.mark.slow
def test_smollm2_served_and_in_memory_agree_token_by_token(tmp_path, smollm2):
    small = ['--n_train', 12, '--n_test', 2, '--batch_size', 4, '--top_k', 8, '--max_rationale_length', 24]
    from distill_sbs.hardware import cpu_info
    cpu_info.cache_clear()  # read again under the variable, and again after it: other tests in this process see the CPU as it is
    try: ok(cli('teacher-logits', '--teacher', smollm2, *small, '--output_dir', tmp_path/'local', env={'ONEDNN_MAX_CPU_ISA': 'AVX2'}))  # float32 (chapter 0f)
    finally: cpu_info.cache_clear()
    with served(smollm2, dtype=torch.float32) as llm:
        ok(cli('teacher-logits', '--teacher', smollm2, '--teacher_url', llm.openai_url, *small, '--output_dir', tmp_path/'served'))
    a, b = arrays(tmp_path/'served'), arrays(tmp_path/'local')
    for task in a:
        same = (a[task].ids.numpy() == b[task].ids.numpy()).mean()
        assert same > 0.99, (task, same)  # float32 both sides: near-ties aside, the same tokens
        assert np.allclose(a[task].logp.float().numpy(), b[task].logp.float().numpy(), atol=5e-3), task
