"""A decoder-only student: our trainer against TRL's `SFTTrainer` (completion-only loss), and batched left-padded
answers against one at a time, in one run.

Every training variant runs in a fresh subprocess (so each peak memory is its own) and trains a freshly
initialised model of the same config on the same examples, in the same order of work: one epoch, the same batch
size, the same prompts (the tokenizer's chat template) and
completions (standard finetuning reads the bare question, distilling step-by-step an instruction first).
An example is one input: trained on its label alone, or on both tasks (label and rationale; TRL gets
the two as two rows, in a batch twice as large, which is the same work). TRL's own default of gradient
checkpointing is turned off, as ours is: it trades speed for memory. The clock starts after the first step.

    python benchmarks/causal_train.py                           # the Qwen2.5-0.5B twin, CQA with PaLM's rationales
    python benchmarks/causal_train.py --config qwen2.5-1.5b --examples 256 --batch_size 16   # on a GPU

Needs ../shared (the Qwen2.5 tokenizer and architectures, the paper's CQA data) and `trl`.
"""
import argparse, json, resource, subprocess, sys, time
from pathlib import Path
import torch

SHARED = Path(__file__).resolve().parents[2]/'shared'

def data(n):
    from distill_sbs.data import load_data
    d = load_data('cqa', data_dir=SHARED/'data')['train']
    return d.filter(lambda r: r is not None, input_columns='rationale').shuffle(seed=0).select(range(n))

def model_and_tokenizer(config, dtype):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(SHARED/'models'/f'{config}-config'), dtype=dtype)
    tok = AutoTokenizer.from_pretrained(SHARED/'models'/'qwen2.5-tokenizer')
    return model.to('cuda' if torch.cuda.is_available() else 'cpu'), tok

def clock():
    from transformers import TrainerCallback
    class StepClock(TrainerCallback):
        def __init__(self): self.times = []
        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available(): torch.cuda.synchronize()
            self.times.append(time.perf_counter())
    return StepClock()

def run_variant(variant, a):
    "One training variant, in this process: examples per second and peak memory, as JSON on stdout."
    from distill_sbs.hardware import pick_hardware
    from distill_sbs.students import student_kind, task_message
    rows, tasks = data(a.examples), 'both' if variant.endswith('both') else 'label'
    model, tok = model_and_tokenizer(a.config, torch.float32)
    hw = pick_hardware(a.bf16, causal=True)  # a GPU without native bf16 trains a causal student in fp16 with loss scaling
    timer = clock()
    common = dict(num_train_epochs=1, learning_rate=1e-5, logging_steps=10**6, disable_tqdm=True, report_to='none',
                  dataloader_drop_last=True, save_strategy='no', bf16=hw.bf16, fp16=hw.fp16, use_cpu=hw.device == 'cpu')
    if variant.startswith('ours'):
        from datasets import DatasetDict
        from distill_sbs.collator import tokenize_tasks
        from distill_sbs.multitask import TrainConfig, make_trainer
        student_kind(model).prepare(tok)
        tokd = tokenize_tasks(DatasetDict({'train': rows}), tok, 'task_prefix' if tasks == 'both' else 'standard',
                              max_input_length=10**6, max_label_length=10**6, max_rationale_length=10**6, kind=student_kind(model))
        cfg = TrainConfig(model_type='task_prefix' if tasks == 'both' else 'standard', batch_size=a.batch_size, lr=common['learning_rate'],
                          warmup_steps=0, run=42, no_log=True, output_dir=a.tmp)
        trainer = make_trainer(model, tok, tokd, cfg, fast=variant.startswith('ours-fast'), hardware=hw, callbacks=[timer], max_steps=-1,
                               **{k: v for k, v in common.items() if k not in ('bf16', 'use_cpu', 'learning_rate', 'report_to')})
    else:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer
        model_type = 'task_prefix' if tasks == 'both' else 'standard'  # the user turns our student reads: see ours above
        turns = lambda task, col: [{'prompt': [{'role': 'user', 'content': task_message(r['input'], task, model_type)}],
                                    'completion': [{'role': 'assistant', 'content': r[col]}]} for r in rows]
        items = turns('predict', 'label')
        if tasks == 'both':  # each example's two rows side by side, so a batch holds whole examples
            items = [x for pair in zip(items, turns('explain', 'rationale')) for x in pair]
        ds = Dataset.from_list(items)
        args = SFTConfig(output_dir=a.tmp, completion_only_loss=True, max_length=None, shuffle_dataset=False, gradient_checkpointing=False,
                         per_device_train_batch_size=a.batch_size * (2 if tasks == 'both' else 1), **common)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, callbacks=[timer])
    trainer.train()
    steps = len(timer.times) - 1
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({'examples_per_s': steps * a.batch_size / (timer.times[-1] - timer.times[0]), 'peak_gib': peak, 'steps': steps}))

def generation(a):
    "Batched left-padded greedy answers against one at a time, the same prompts and forced lengths."
    from distill_sbs.inference import generate
    from distill_sbs.students import student_kind
    dtype = torch.bfloat16 if a.bf16 else torch.float32
    model, tok = model_and_tokenizer(a.config, dtype)
    kind = student_kind(model); kind.prepare(tok)
    prompts = [kind.prompt(tok, t) for t in data(a.prompts)['input']]
    generate(model, tok, prompts[:2], 4, batch_size=2)  # warm-up
    t0 = time.perf_counter(); batched = generate(model, tok, prompts, a.new_tokens, a.gen_batch, a.new_tokens); t_b = time.perf_counter() - t0
    t0 = time.perf_counter(); alone = [generate(model, tok, [p], a.new_tokens, 1, a.new_tokens).texts[0] for p in prompts]; t_1 = time.perf_counter() - t0
    return t_b, t_1, sum(x != y for x, y in zip(batched.texts, alone))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--config', default='qwen2.5-0.5b')
    p.add_argument('--examples', type=int, default=40)
    p.add_argument('--batch_size', type=int, default=4)
    p.add_argument('--prompts', type=int, default=32)
    p.add_argument('--gen_batch', type=int, default=16)
    p.add_argument('--new_tokens', type=int, default=16)
    p.add_argument('--bf16', action='store_true', help='bf16 autocast (and bf16 weights for generation)')
    p.add_argument('--variant', help=argparse.SUPPRESS)
    p.add_argument('--tmp', default='/tmp/causal_bench', help=argparse.SUPPRESS)
    p.add_argument('--skip_train', action='store_true')
    a = p.parse_args()
    if a.variant: return run_variant(a.variant, a)
    from distill_sbs.hardware import cpu_info, native_bf16
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_info()[0]
    print(f'device: {dev}; multiplies bf16 natively: {native_bf16("cuda" if torch.cuda.is_available() else "cpu")}; '
          f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    print(f'{a.config} twin (random weights), real Qwen2.5 tokenizer, CQA with PaLM rationales; {a.examples} examples, batch {a.batch_size}'
          f'{", bf16 autocast" if a.bf16 else ", fp32"}')
    if not a.skip_train:
        res = {}
        for v in ('trl-label', 'ours-plain-label', 'ours-fast-label', 'trl-both', 'ours-plain-both', 'ours-fast-both'):
            out = subprocess.run([sys.executable, __file__, '--variant', v, *sys.argv[1:]], capture_output=True, text=True)
            if out.returncode: print(f'{v}: failed\n{out.stderr[-3000:]}'); continue
            res[v] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{v:18} {res[v]['examples_per_s']:7.2f} examples/s   peak {res[v]['peak_gib']:5.1f} GiB   ({res[v]['steps']} timed steps)", flush=True)
        for tasks in ('label', 'both'):
            if f'trl-{tasks}' in res:
                base = res[f'trl-{tasks}']['examples_per_s']
                print(f'{tasks}: ' + ', '.join(f"{v} {res[v]['examples_per_s'] / base:.2f}x TRL" for v in res if v.endswith(tasks) and v.startswith('ours')))
    t_b, t_1, differ = generation(a)
    print(f'generation, {a.prompts} prompts x {a.new_tokens} new tokens: batched (left-padded, {a.gen_batch} a batch) {t_b:.2f} s, '
          f'one at a time {t_1:.2f} s: {t_1 / t_b:.1f}x; {differ} of {a.prompts} answers differ')

if __name__ == '__main__': main()
