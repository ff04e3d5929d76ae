"""Our token-level distillation trainer (`make_trainer` with an `OnlineTeacher`) against TRL 1.16's stable
`trl.DistillationTrainer`, on the same causal pair: a Qwen2.5-1.5B twin teacher (random weights, seed 1) distilled
into a Qwen2.5-0.5B twin student (seed 0), the Qwen2.5 tokenizer and its chat template, the CQA examples that have
PaLM's rationales (`kd_offline.py`'s `data`), the same student initialisation in both.

On-policy, because TRL's stable trainer allows nothing else: it has no `lmbda` (GKD's share of on-policy batches)
and takes only prompts from its dataset; every completion it trains on is sampled by the student
(`_generate_single_turn`). So both train on the student's own samples, at temperature 1 with no top-k or top-p:

- ours: `make_trainer(TrainConfig(kd_on_policy=1, ...))`: in every batch each task's prompts are continued by the
  student (`sample_completions`, up to the longest gold target of that task's batch);
- trl: `DistillationTrainer` as shipped, up to `max_completion_length` tokens a completion.

The same prompts and examples. Ours trains task-prefix rows: for each example a `predict` prompt (its target the
label) and an `explain` prompt (its target the rationale), in the chat template. TRL's dataset holds, for each
example, those two prompts as text, decoded from our very token ids; the script checks that TRL's tokenisation of
each gives back our ids, so both sample from the same prompt tokens. Equal examples a step, in the same order: ours
`batch_size` B examples (2B sequences), TRL `per_device_train_batch_size` 2B rows; no shuffling in either (our fast
settings' length grouping and TRL's `shuffle_dataset` off), so step k sees examples kB to kB + B - 1 in both. A
random-weight student practically never samples its end of turn, so every completion runs to its limit: ours samples
B · (longest label + longest rationale) tokens at a step, and TRL's `max_completion_length` is by default the mean
over the run's batches of half that sum, so that its 2B completions hold as many tokens on average. The table gives
the completion tokens each trained on at every step, and target tokens/s beside examples/s.

The same divergence: the forward KL(teacher ‖ student) at temperature 1, over the whole vocabulary at every
completion token, the teacher without gradients. TRL: `beta=0`. In TRL 1.16 `beta` interpolates its generalised JSD
and 0 is the forward KL (`ChunkedDivergenceFunction` takes sum p_t (log p_t - log p_s) when `beta == 0`); 1, its
default, is the reverse KL. TRL's loss has no cross-entropy term, so ours is pure distillation:
`kd_loss='forward_kl'`, `kd_temperature=1`, `kd_on='both'`, `ce_weight=0` (so, on the student's own samples, it
skips the gold targets' cross-entropy, which it would only have logged). Reductions differ: TRL averages
the divergence over all completion tokens of its batch; ours averages each task's and weighs label and rationale
α = 0.5 each. Each trainer's loss is shown as it reports it, and for ours also pooled over the step's tokens as TRL
pools them. Left as they are: ours compares the tokenizer's 151,665 tokens, TRL the output layer's padded 151,936;
TRL runs both tasks' rows in one forward pass padded to the longest, ours one pass per task.

Everything else the same: AdamW (`adamw_torch_fused`), learning rate 1e-5 decaying linearly, no warm-up, seed 42,
`dataloader_drop_last`; gradient checkpointing off in both (TRL turns it on by default; `--checkpointing` turns it on
in both); the teacher in bf16 where the hardware multiplies bf16 natively, else fp32 (as `kd_offline.py` loads it),
in both; the student in fp32 with the autocast our fast settings pick (`training_hardware`: none on a CPU, bf16 on a
GPU that has it), given to TRL as its `bf16`/`fp16` (its default `bf16=True` overridden); fp32 matrix products at our
fast settings' precision in both (`torch.set_float32_matmul_precision`: 'medium', through bf16, on a CPU that
multiplies bf16; 'high', TF32, on a GPU that has it).

Each variant runs in a fresh subprocess (`--variant ours|trl`), which prints its measurements as JSON. Speed:
examples/s over the steps after the first (the `StepClock` of `kd_common`, a `TrainerCallback`: both trainers are
`transformers.Trainer`s). Memory: the whole-step peak, the process's peak over the run (ru_maxrss on a CPU,
`torch.cuda.max_memory_allocated` on a GPU), so the peak of every part of a step: sampling, the teacher's forward
pass, the student's forward and backward passes, AdamW; and what stays resident after the first step (weights, the
teacher, AdamW's state). Each step's completion tokens are counted through one method of each trainer object,
wrapped (ours: its `KDSettings.terms`; TRL's: `_generate_and_score_completions`), which changes nothing they compute.

`--policy off` is a check, not TRL as shipped: TRL's `_generate_single_turn` replaced by one that returns the
dataset's own completions (our tokenised targets, as ids), and ours with `kd_on_policy=0`, so both train on the very
same tokens and their first step's losses must agree (TRL's against ours pooled). It writes `kd_trl_off_policy`.

    python benchmarks/kd_trl.py                     # full-size twins: 32 examples, batch 4, 8 steps, on-policy
    python benchmarks/kd_trl.py --teacher_layers 2 --student_layers 2 --examples 8 --batch_size 2 --steps 3   # a smoke test
    python benchmarks/kd_trl.py --policy off --teacher_layers 2 --student_layers 2 --examples 8 --batch_size 2 --steps 3
    python benchmarks/kd_trl.py --report_only       # the table again, from results/kd_trl.json

Needs ../shared (the Qwen2.5 tokenizer and architectures, the paper's CQA data) and `trl` 1.16.
"""
import argparse, json, shutil, subprocess, sys
from pathlib import Path
import torch

from kd_common import clock, device_line, less, peak_gib, twin
from kd_offline import data, teacher_dtype, tokenized, tokenizer
from record import RESULTS, write_result

TEACHER, STUDENT, TOKENIZER = 'qwen2.5-1.5b', 'qwen2.5-0.5b', 'qwen2.5-tokenizer'
SEED = 42

def resident_gib() -> float:
    "What this process holds now: the GPU's allocations, or the CPU's resident set."
    if torch.cuda.is_available(): return torch.cuda.memory_allocated() / 2**30
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'): return int(line.split()[1]) / 2**20
    return float('nan')

def after_first_step():
    "A `TrainerCallback` that notes what the process holds once the first step is done."
    from transformers import TrainerCallback
    class AfterFirst(TrainerCallback):
        gib = None
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 1: self.gib = resident_gib()
    return AfterFirst()

def pairs(train) -> list[tuple[list[int], list[int]]]:
    "(prompt ids, completion ids) of every tokenised row, example by example: its predict row, then its explain row."
    out = []
    for r in train:
        for ids, labels in ((r['input_ids'], r['labels']), (r['expl_input_ids'], r['expl_labels'])):
            out.append(([i for i, l in zip(ids, labels) if l == -100], [i for i, l in zip(ids, labels) if l != -100]))
    return out

def step_examples(a, n:int) -> list[range]:
    "The examples each step trains on, in both trainers: in order, B at a time, the last incomplete batch of an epoch dropped."
    per_epoch = n // a.batch_size
    return [range((k % per_epoch) * a.batch_size, (k % per_epoch + 1) * a.batch_size) for k in range(a.steps)]

def completion_length(a, rows) -> int:
    "TRL's `max_completion_length` that matches, on average over the steps, the tokens ours samples: half its longest label plus longest rationale."
    sums = [max(len(rows[2 * i][1]) for i in ex) + max(len(rows[2 * i + 1][1]) for i in ex) for ex in step_examples(a, len(rows) // 2)]
    return max(1, round(sum(sums) / len(sums) / 2))

def run_variant(a):
    "One trainer, in this process: its speed, memory and per-step losses, as JSON on stdout."
    from distill_sbs.multitask import training_hardware
    from distill_sbs.students import student_kind
    hw, tok = training_hardware(True, causal=True), tokenizer(TOKENIZER)
    student = twin(STUDENT, a.student_layers, seed=0).to(hw.device)
    teacher = twin(TEACHER, a.teacher_layers, seed=1, dtype=teacher_dtype(hw))
    tokd = tokenized(data(a.examples), tok, student_kind(student), a)
    rows = pairs(tokd['train'])
    trl_ids = tok(text=[tok.decode(p) for p, _ in rows])['input_ids']  # as TRL tokenises a text prompt
    bad = sum(t != p for t, (p, _) in zip(trl_ids, rows))
    if bad: sys.exit(f'{bad} of {len(rows)} prompts do not tokenise back to our ids: TRL would read other prompts')
    precision = hw.matmul_precision(True)  # what `make_trainer`'s fast settings train at; set for TRL below
    timer, held, seen = clock(), after_first_step(), []
    common = dict(max_steps=a.steps, learning_rate=a.lr, warmup_steps=0, seed=SEED, logging_steps=1, disable_tqdm=True, report_to='none',
                  dataloader_drop_last=True, save_strategy='no', gradient_checkpointing=a.checkpointing, optim='adamw_torch_fused')
    out_dir = str(Path(a.tmp)/a.variant)
    if a.variant == 'ours':
        from distill_sbs.kd_teachers import online_teacher
        from distill_sbs.multitask import TrainConfig, make_trainer
        cfg = TrainConfig(teacher=f'{TEACHER} twin', kd_loss='forward_kl', kd_temperature=1.0, kd_on='both', ce_weight=0.0,
                          kd_on_policy=1.0 if a.policy == 'on' else 0.0, batch_size=a.batch_size, max_steps=a.steps, lr=a.lr,
                          warmup_steps=0, run=SEED, no_log=True, output_dir=out_dir)
        trainer = make_trainer(student, tok, tokd, cfg, teacher=online_teacher(teacher, tok, student, tok, f'{TEACHER} twin', f'{STUDENT} twin'),
                               hardware=hw, callbacks=[timer, held], eval_rows=None, train_sampling_strategy='sequential',
                               **{k: v for k, v in common.items() if k not in ('max_steps', 'learning_rate', 'warmup_steps', 'seed')})
        terms = trainer.kd.terms
        def counted(hidden, targets, head, teacher, *rest, **kw):  # each distilled task's target tokens and divergence
            out = terms(hidden, targets, head, teacher, *rest, **kw)
            if teacher is not None: seen.append(((targets != -100).sum(), out[1].detach().float()))
            return out
        trainer.kd.terms = counted
    else:
        from datasets import Dataset
        from trl import DistillationConfig, DistillationTrainer
        cls = DistillationTrainer
        if a.policy == 'off':
            class DatasetCompletions(DistillationTrainer):
                "TRL's trainer with the student's sampling replaced by the dataset's completion ids, the only change (TRL has no off-policy setting)."
                def _generate_and_score_completions(self, inputs):
                    self._given = [list(x['completion_ids']) for x in inputs]
                    return super()._generate_and_score_completions(inputs)
                def _generate_single_turn(self, prompt_ids, *args, **kw): return self._given
            cls = DatasetCompletions
        ds = Dataset.from_dict({'prompt': [tok.decode(p) for p, _ in rows], 'completion_ids': [c for _, c in rows]})
        args = DistillationConfig(output_dir=out_dir, per_device_train_batch_size=2 * a.batch_size, beta=0.0, temperature=1.0,
                                  max_completion_length=a.max_completion_length or completion_length(a, rows), shuffle_dataset=False,
                                  bf16=hw.bf16, fp16=hw.fp16, tf32=True if hw.tf32 else None, use_cpu=hw.device == 'cpu', **common)
        trainer = cls(model=student, teacher_model=teacher, args=args, train_dataset=ds, processing_class=tok, callbacks=[timer, held])
        score = trainer._generate_and_score_completions
        def counted(inputs):  # each step's completion tokens (TRL's loss averages over them)
            out = score(inputs)
            seen.append(out['num_items_in_batch'])
            return out
        trainer._generate_and_score_completions = counted
    prev = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)  # ours sets the same inside its `train`
    try: trainer.train()
    finally: torch.set_float32_matmul_precision(prev)
    logs = [e for e in trainer.state.log_history if 'loss' in e]
    m = trainer.model
    checkpointed = getattr(m, 'is_activation_checkpointing', None)
    if checkpointed is None: checkpointed = m.is_gradient_checkpointing  # older transformers
    if bool(checkpointed) != a.checkpointing: sys.exit(f'gradient checkpointing is {bool(checkpointed)}, asked for {a.checkpointing}')
    steps, secs = len(timer.times) - 1, timer.times[-1] - timer.times[0]
    res = dict(variant=a.variant, policy=a.policy, steps=steps, losses=[e['loss'] for e in logs], grad_norms=[e.get('grad_norm') for e in logs])
    if a.variant == 'ours':
        n, d = [int(x.item()) for x, _ in seen], [x.item() for _, x in seen]
        if len(seen) != 2 * a.steps: sys.exit(f'expected a label and a rationale divergence at each of {a.steps} steps, got {len(seen)}')
        res |= dict(tokens=[n[i] + n[i + 1] for i in range(0, len(n), 2)], kd_label=d[0::2], kd_rationale=d[1::2],
                    pooled=[(n[i] * d[i] + n[i + 1] * d[i + 1]) / (n[i] + n[i + 1]) for i in range(0, len(n), 2)])
    else:
        res |= dict(tokens=[int(x.item()) for x in seen], max_completion_length=args.max_completion_length)
    res |= dict(examples_per_s=steps * a.batch_size / secs, tokens_per_s=sum(res['tokens'][1:]) / secs, seconds_per_step=secs / steps,
                peak_gib=peak_gib(), after_first_step_gib=held.gib, matmul_precision=precision, autocast=hw.precision,
                teacher_dtype=str(teacher_dtype(hw)).removeprefix('torch.'), checkpointing=bool(checkpointed), prompts_checked=len(rows))
    print(json.dumps(res))

def report(rows:dict, a, name:str):
    "The markdown table and its sentences, written to results/NAME.md."
    ours, trl = rows['ours'], rows['trl']
    cut = lambda n: f' cut to {n} layers' if n else ''
    on = a.policy == 'on'
    how = ('on-policy in both (TRL\'s stable trainer has no off-policy setting): every completion sampled by the student at temperature 1, '
           f'ours up to each task batch\'s longest gold target, TRL up to max_completion_length {trl["max_completion_length"]}' if on else
           'off-policy in both, a check: TRL\'s sampling replaced by the dataset\'s completions (not a TRL setting), ours with kd_on_policy=0; '
           'the very same target tokens')
    lines = [f"{TEACHER} twin{cut(a.teacher_layers)} (teacher, {ours['teacher_dtype']}) -> {STUDENT} twin{cut(a.student_layers)} (student; random "
             f"weights), the Qwen2.5 tokenizer's chat template, CQA with PaLM's rationales: {a.examples} examples, {a.batch_size} a step "
             f"({2 * a.batch_size} sequences: predict and explain), {a.steps} steps, the same examples in the same order in both; inputs <= "
             f"{a.max_input_length} tokens, labels <= {a.max_label_length}, rationales <= {a.max_rationale_length}. {how}. Forward KL(teacher || "
             f"student) at temperature 1 and no cross-entropy: TRL beta=0, ours kd_loss=forward_kl with ce_weight=0. AdamW (fused), lr {a.lr}, "
             f"no warm-up; gradient checkpointing {'on' if a.checkpointing else 'off'} in both; student {ours['autocast']}, fp32 matrix products "
             f"at '{ours['matmul_precision']}' in both. One process a variant; speed over the steps after the first; whole-step peak: the "
             f"process's peak over every part of every step (ru_maxrss on a CPU, max_memory_allocated on a GPU).\n",
             '| trainer | examples/s | target tokens/s | s/step | whole-step peak GiB | after step 1 GiB | completion tokens per step | loss per step |',
             '|---|---|---|---|---|---|---|---|']
    for label, r in (('ours', ours), ('TRL DistillationTrainer', trl)):
        lines.append(f"| {label} | {r['examples_per_s']:.3f} | {r['tokens_per_s']:.1f} | {r['seconds_per_step']:.1f} | {r['peak_gib']:.2f} | "
                     f"{r['after_first_step_gib']:.2f} | {', '.join(map(str, r['tokens']))} | {', '.join(f'{x:.4f}' for x in r['losses'])} |")
    speed = ours['examples_per_s'] / trl['examples_per_s']
    lines += ['', f"Ours / TRL: {speed:.2f}x the examples/s (goal: at least 1x), {ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x the target "
              f"tokens/s, {less(ours['peak_gib'], trl['peak_gib'])} whole-step peak memory ({ours['peak_gib']:.2f} against {trl['peak_gib']:.2f} GiB; "
              f"goal: no more), {ours['peak_gib'] / trl['peak_gib']:.2f}x.",
              '', f"Ours' loss weighs the label's and the rationale's mean KL 0.5 each; pooled over the step's target tokens as TRL's is: "
              f"{', '.join(f'{x:.4f}' for x in ours['pooled'])}."]
    d = abs(ours['pooled'][0] - trl['losses'][0]) / abs(trl['losses'][0])
    lines.append(f"First step: ours pooled {ours['pooled'][0]:.6f}, TRL {trl['losses'][0]:.6f}, {d:.2%} apart" +
                 (' (over different samples: the same size is all one can ask)' if on else ' (the same tokens)') + '.')
    write_result(name, "Our distillation trainer against TRL's DistillationTrainer" + (' (off-policy check)' if not on else '')
                 + (', with gradient checkpointing' if a.checkpointing else ''), '\n'.join(lines))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--policy', choices=('on', 'off'), default='on', help="on: TRL's stable trainer as shipped; off: a check on the same tokens")
    p.add_argument('--examples', type=int, default=32)
    p.add_argument('--batch_size', type=int, default=4, help='examples a step (2x that many sequences in both)')
    p.add_argument('--steps', type=int, default=8)
    p.add_argument('--lr', type=float, default=1e-5)
    p.add_argument('--max_input_length', type=int, default=128)
    p.add_argument('--max_label_length', type=int, default=32)
    p.add_argument('--max_rationale_length', type=int, default=64)
    p.add_argument('--max_completion_length', type=int, help="TRL's, on-policy (default: the tokens ours samples, on average)")
    p.add_argument('--checkpointing', action='store_true', help='gradient checkpointing in both (off in both by default)')
    p.add_argument('--teacher_layers', type=int, help='cut the teacher twin to this many layers (smoke tests)')
    p.add_argument('--student_layers', type=int, help='cut the student twin to this many layers (smoke tests)')
    p.add_argument('--report_only', action='store_true', help='write the table from its results/*.json, running nothing')
    p.add_argument('--variant', choices=('ours', 'trl'), help=argparse.SUPPRESS)
    p.add_argument('--tmp', default='/tmp/kd_trl_bench', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.variant: return run_variant(a)
    name = 'kd_trl' + ('_off_policy' if a.policy == 'off' else '') + ('_checkpointing' if a.checkpointing else '')
    if a.report_only:
        saved = json.loads((RESULTS/f'{name}.json').read_text())
        return report(saved['rows'], argparse.Namespace(**saved['args']), name)
    print(device_line(), flush=True)
    rows = {}
    try:
        for v in ('ours', 'trl'):
            out = subprocess.run([sys.executable, __file__, '--variant', v, *sys.argv[1:]], capture_output=True, text=True)
            if out.returncode: sys.exit(f'{v}: failed\n{out.stderr[-3000:]}')
            rows[v] = r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{v:5} {r['examples_per_s']:7.3f} examples/s  {r['tokens_per_s']:7.1f} tokens/s  peak {r['peak_gib']:6.2f} GiB  "
                  f"losses {', '.join(f'{x:.4f}' for x in r['losses'])}  tokens {r['tokens']}", flush=True)
    finally: shutil.rmtree(a.tmp, ignore_errors=True)
    import trl
    RESULTS.mkdir(exist_ok=True)
    (RESULTS/f'{name}.json').write_text(json.dumps(dict(rows=rows, args=vars(a), device=device_line(), torch=torch.__version__, trl=trl.__version__,
                                                        threads=torch.get_num_threads()), indent=1))
    report(rows, a, name)

if __name__ == '__main__': main()
