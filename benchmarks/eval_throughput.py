"""Answers per second at evaluation: batched, length-sorted generation against one example at a time, in one run.

The tutorial scored its student by generating an answer for one test example at a time (it used the now-removed
`text2text-generation` pipeline; here the same thing is written plainly: tokenize one input, `generate`, decode).
`Student.answer` (chapter 2b) generates whole batches, longest inputs first. Both use the same model, the same test
inputs, greedy decoding and the same `max_new_tokens`; the benchmark checks they give the same answers.

    python benchmarks/eval_throughput.py                        # flan-t5-small config on CQA test questions
    python benchmarks/eval_throughput.py --config flan-t5-base --examples 1024   # on a GPU

Uses ../shared (the paper's CQA test questions, the real T5 tokenizer, the Flan-T5 configs) when it is beside the
checkout; without it, the built-in task with the tiny student. The weights are random (speed does not depend on
them), so every answer is forced to its full `max_new_tokens` (`min_new_tokens`): both ways do the same work, and an
untrained model's early end-of-sequence does not flatter either.
"""
import argparse, time
from pathlib import Path
import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

from distill_sbs.data import load_data
from distill_sbs.students import task_input
from distill_sbs.hardware import cpu_info, native_bf16
from distill_sbs.inference import Student
from distill_sbs.students import tiny_student

SHARED = Path(__file__).resolve().parents[2]/'shared'

def setup(config, n):
    if (SHARED/'data'/'cqa').is_dir():
        data = load_data('cqa', data_dir=SHARED/'data')
        tok = AutoTokenizer.from_pretrained(SHARED/'models'/'t5-tokenizer')
        torch.manual_seed(0)
        model = AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(SHARED/'models'/f'{config}-config'))
        what = f'{config} config (random weights), CQA test questions, T5 tokenizer'
    else:
        data = load_data('arith')
        model, tok = tiny_student(texts=list(data['train']['input']))
        what = 'tiny student, built-in arithmetic test questions (no ../shared here)'
    questions = data['test'].shuffle(seed=0)['input'][:n]
    return model.eval(), tok, questions, what

def sync():
    if torch.cuda.is_available(): torch.cuda.synchronize()

@torch.no_grad()
def one_at_a_time(model, tok, inputs, max_new_tokens):
    "The tutorial's way: one input, one `generate`, one decode."
    out = []
    for text in inputs:
        enc = tok(text, return_tensors='pt').to(model.device)
        gen = model.generate(**enc, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False, num_beams=1)
        out.append(tok.decode(gen[0], skip_special_tokens=True).strip())
    return out

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default='flan-t5-small', help='flan-t5-small, flan-t5-base or flan-t5-large (with ../shared)')
    p.add_argument('--examples', type=int, default=256)
    p.add_argument('--batch_size', type=int, default=64)
    p.add_argument('--max_new_tokens', type=int, default=16)
    a = p.parse_args()
    model, tok, questions, what = setup(a.config, a.examples)
    inputs = [task_input(q) for q in questions]  # what the one-at-a-time loop reads; the student adds the prefix itself
    if torch.cuda.is_available(): model = model.cuda()
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
        f'{cpu_info()[0]}, {torch.get_num_threads()} threads, bf16 units: {"yes" if native_bf16("cpu") else "no"}'
    print(f'{what}; {len(inputs)} examples, max_new_tokens {a.max_new_tokens}, greedy; {dev}')
    # both ways force full-length answers, so the work is the same; batched goes through the library's path
    model.generation_config.min_new_tokens = a.max_new_tokens
    one_at_a_time(model, tok, inputs[:2], a.max_new_tokens)  # warm-up
    sync(); t0 = time.perf_counter()
    alone = one_at_a_time(model, tok, inputs, a.max_new_tokens)
    sync(); t_alone = time.perf_counter() - t0
    sync(); t0 = time.perf_counter()
    batched = Student(model, tok).answer(questions, max_new_tokens=a.max_new_tokens, batch_size=a.batch_size)
    sync(); t_batched = time.perf_counter() - t0
    same = sum(x == y for x, y in zip(alone, batched))
    r_alone, r_batched = len(inputs) / t_alone, len(inputs) / t_batched
    print(f'{"one at a time (the tutorial)":42} {r_alone:9.1f} answers/s  ({t_alone:6.1f} s)')
    print(f'{f"batched {a.batch_size}, length-sorted (Student.answer)":42} {r_batched:9.1f} answers/s  ({t_batched:6.1f} s)')
    print(f'speed-up {r_batched / r_alone:.1f}x; identical answers: {same}/{len(inputs)}')

if __name__ == '__main__': main()
