"""Token-level distillation from a teacher in memory (`OnlineTeacher`) against from its top-k log-probabilities
written to disk beforehand (`TopKLogits`), with plain distilling step-by-step (no KD) for context.

Two pairs of random-weight twins of the real architectures, each student distilled from its teacher through the
same tokenizer: (a) Flan-T5-large → Flan-T5-small (T5 tokenizer), (b) Qwen2.5-1.5B → Qwen2.5-0.5B (Qwen2.5
tokenizer and its chat template). Every variant runs in a fresh subprocess (so each peak memory is its own: ru_maxrss
on a CPU, `torch.cuda.max_memory_allocated` on a GPU) and trains the same student initialisation (seed 0) on the
same CQA examples with PaLM's rationales (task_prefix: both tasks, KD on both, `kd_on='both'`, forward KL,
temperature 1), in the same order, with the same batch size and number of steps, through `make_trainer`'s fast
settings:

- no-kd: distilling step-by-step alone (α · label CE + (1 − α) · rationale CE), no teacher;
- online: the same plus γ · KD from the teacher run beside the student (in bf16 where the hardware multiplies it
  natively, else fp32, as `distill_sbs.training.open_teacher` loads it);
- offline: the same KD from the teacher's top-k (k = 20, and a tail bucket) written by `write_teacher_logits`
  before training. The teacher is never loaded in the training process. Writing the logits is its own
  subprocess, timed and measured on its own and not counted in the training speed.

The clock starts after the first step (examples/s over the steps after it). The teacher (seed 1) is the same in the
online run and in the one that writes the logits. The issue's target is offline ≥ 2x online speed and ≥ 40% less
peak memory; the table reports what is measured.

    python benchmarks/kd_offline.py                  # both pairs, full-size twins: 32 examples, batch 4, 8 steps
    python benchmarks/kd_offline.py --pair t5 --examples 8 --batch_size 2 --steps 3 --teacher_layers 2 --student_layers 2

Needs ../shared (the tokenizers, the architectures, the paper's CQA data).
"""
import argparse, json, shutil, subprocess, sys, time
from pathlib import Path
import torch

from kd_common import SHARED, clock, device_line, peak_gib, sync, twin
from record import write_result

SAID = []  # what the run printed, for its results file
def say(*parts, **kw):
    print(*parts, **kw); SAID.append(' '.join(map(str, parts)).strip('\n'))
PAIRS = {  # teacher config, student config, tokenizer
    't5': ('flan-t5-large', 'flan-t5-small', 't5-tokenizer'),
    'qwen': ('qwen2.5-1.5b', 'qwen2.5-0.5b', 'qwen2.5-tokenizer'),
}

def data(n):
    from distill_sbs.data import load_data
    d = load_data('cqa', data_dir=SHARED/'data')['train']
    return d.filter(lambda r: r is not None, input_columns='rationale').shuffle(seed=0).select(range(n))


def tokenizer(name):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(SHARED/'models'/name)

def tokenized(rows, tok, kind, a):
    from datasets import DatasetDict
    from distill_sbs.collator import tokenize_tasks
    kind.prepare(tok)
    return tokenize_tasks(DatasetDict({'train': rows}), tok, 'task_prefix', max_input_length=a.max_input_length,
                          max_label_length=a.max_label_length, max_rationale_length=a.max_rationale_length, kind=kind, rows=True)

def teacher_dtype(hw): return torch.bfloat16 if hw.native_bf16 else torch.float32  # as `open_teacher` loads it


def logits_dir(a): return Path(a.tmp)/a.pair/'teacher_logits'

def write_logits(a):
    "The teacher's top-k at every target token of the training examples, written to disk: seconds, rows/s, peak memory and bytes."
    from distill_sbs.hardware import pick_hardware
    from distill_sbs.kd_teachers import OnlineTeacher, write_teacher_logits
    from distill_sbs.students import student_kind
    t_cfg, _, tok_name = PAIRS[a.pair]
    hw, tok = pick_hardware(), tokenizer(tok_name)
    model = twin(t_cfg, a.teacher_layers, seed=1, dtype=teacher_dtype(hw)).to(hw.device)
    teacher = OnlineTeacher(model, tok, f'{t_cfg} twin')
    tokd = tokenized(data(a.examples), tok, student_kind(model), a)
    out = logits_dir(a)
    if out.exists(): shutil.rmtree(out)
    sync(); t0 = time.perf_counter()
    summary = write_teacher_logits(teacher, tokd['train'], out, k=a.k, batch_size=a.write_batch_size, progress=False)
    sync(); secs = time.perf_counter() - t0
    print(json.dumps({'seconds': secs, 'rows_per_s': a.examples / secs, 'peak_gib': peak_gib(), **summary}))

def run_variant(variant, a):
    "One training variant, in this process: examples per second and peak memory, as JSON on stdout."
    from distill_sbs.hardware import pick_hardware
    from distill_sbs.kd_teachers import TopKLogits, online_teacher
    from distill_sbs.multitask import TrainConfig, make_trainer
    from distill_sbs.students import student_kind
    t_cfg, s_cfg, tok_name = PAIRS[a.pair]
    hw, tok = pick_hardware(), tokenizer(tok_name)
    model = twin(s_cfg, a.student_layers, seed=0).to(hw.device)
    tokd = tokenized(data(a.examples), tok, student_kind(model), a)
    source = {'online': dict(teacher=f'{t_cfg} twin'), 'offline': dict(teacher_logits=str(logits_dir(a)))}.get(variant, {})
    cfg = TrainConfig(kd_loss=a.kd_loss, kd_on='both', batch_size=a.batch_size, max_steps=a.steps, lr=1e-5, warmup_steps=0, run=42,
                      no_log=True, output_dir=str(Path(a.tmp)/a.pair/variant), **source)
    teacher = None
    if variant == 'online':  # make_trainer moves it to the student's device
        t = twin(t_cfg, a.teacher_layers, seed=1, dtype=teacher_dtype(hw))
        teacher = online_teacher(t, tok, model, tok, f'{t_cfg} twin', f'{s_cfg} twin')
    if variant == 'offline':  # the teacher is never loaded here
        teacher = TopKLogits(logits_dir(a))
        teacher.check(tokd['train'], tok, cfg.kd_temperature)
    timer = clock()
    trainer = make_trainer(model, tok, tokd, cfg, teacher=teacher, hardware=hw, callbacks=[timer], eval_rows=None,
                           logging_steps=10**6, disable_tqdm=True, dataloader_drop_last=True)
    trainer.train()
    steps = len(timer.times) - 1
    print(json.dumps({'examples_per_s': steps * a.batch_size / (timer.times[-1] - timer.times[0]), 'peak_gib': peak_gib(), 'steps': steps}))

def sub(args):
    "Run this script with `args` in a fresh process; its last stdout line as JSON, or None after printing why it failed."
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode: print(f'{" ".join(args[:2])}: failed\n{out.stderr[-3000:]}', flush=True); return None
    return json.loads(out.stdout.strip().splitlines()[-1])

def bench_pair(pair, argv, a):
    t_cfg, s_cfg, tok_name = PAIRS[pair]
    shrink = lambda n: f' cut to {n} layers' if n else ''
    say(f'\n{pair}: {t_cfg} twin{shrink(a.teacher_layers)} -> {s_cfg} twin{shrink(a.student_layers)} (random weights), {tok_name}; '
          f'{a.examples} examples, batch {a.batch_size}, {a.steps} steps, inputs <= {a.max_input_length} tokens, rationales <= '
          f'{a.max_rationale_length}; KD {a.kd_loss} on both tasks, top-{a.k} offline', flush=True)
    argv = [*argv, '--pair', pair]  # the last --pair wins
    wrote = sub(['--write', *argv])
    if wrote:
        say(f"writing the top-{a.k} logits (not counted below): {wrote['seconds']:.1f} s, {wrote['rows_per_s']:.2f} examples/s, "
              f"peak {wrote['peak_gib']:.2f} GiB; {wrote['tokens']:,} target tokens, {wrote['bytes']:,} bytes "
              f"({wrote['bytes_per_token']} per token)", flush=True)
    res = {}
    for v in ('no-kd', 'online', 'offline'):
        if v == 'offline' and not wrote: continue
        if (r := sub(['--variant', v, *argv])) is None: continue
        res[v] = r
        say(f"  {v:8} {r['examples_per_s']:7.3f} examples/s   peak {r['peak_gib']:6.2f} GiB   ({r['steps']} timed steps)", flush=True)
    if 'online' in res and 'offline' in res:
        on, off = res['online'], res['offline']
        speed, d = off['examples_per_s'] / on['examples_per_s'], 1 - off['peak_gib'] / on['peak_gib']
        mem = f'{d:.0%} less' if d >= 0 else f'{-d:.0%} more'
        say(f'  offline / online: {speed:.2f}x the speed (target >= 2x), {mem} peak memory (target >= 40% less)')
    if 'no-kd' in res:
        base = res['no-kd']
        say('  against no KD: ' + ', '.join(f"{v} {res[v]['examples_per_s'] / base['examples_per_s']:.2f}x the speed, "
                                              f"{res[v]['peak_gib'] / base['peak_gib']:.2f}x the memory" for v in res if v != 'no-kd'))
    return res

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pair', choices=('t5', 'qwen', 'both'), default='both')
    p.add_argument('--examples', type=int, default=32)
    p.add_argument('--batch_size', type=int, default=4)
    p.add_argument('--steps', type=int, default=8)
    p.add_argument('--max_input_length', type=int, default=128)
    p.add_argument('--max_label_length', type=int, default=32)
    p.add_argument('--max_rationale_length', type=int, default=64)
    p.add_argument('--k', type=int, default=20, help='teacher tokens kept per target token offline')
    p.add_argument('--kd_loss', default='forward_kl')
    p.add_argument('--write_batch_size', type=int, default=8, help='rows per teacher forward pass while writing the logits')
    p.add_argument('--teacher_layers', type=int, help='cut the teacher twin to this many layers (smoke tests)')
    p.add_argument('--student_layers', type=int, help='cut the student twin to this many layers (smoke tests)')
    p.add_argument('--variant', help=argparse.SUPPRESS)
    p.add_argument('--write', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--tmp', default='/tmp/kd_offline_bench', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.write: return write_logits(a)
    if a.variant: return run_variant(a.variant, a)
    say(device_line())
    for pair in (('t5', 'qwen') if a.pair == 'both' else (a.pair,)): bench_pair(pair, sys.argv[1:], a)
    write_result(f'kd_offline_{a.pair}', 'Offline top-k against an online teacher', '\n'.join(['```', *SAID, '```']))

if __name__ == '__main__': main()
