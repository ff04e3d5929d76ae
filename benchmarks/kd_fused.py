"""The distillation step's loss the way chapter 3 made it before (the model's whole logits, then `F.cross_entropy`
and the chunked `kd_loss`) against the fused, completion-only loss (`fused_losses`: logits made from the hidden
states a chunk of target tokens at a time, and again in the backward pass), on a Qwen2.5-0.5B twin (random
weights, the real architecture and its 151,936-token vocabulary).

Each variant runs in a fresh subprocess: the same student (seed 0), the same batch (8 rows of 256 tokens, the last
128 of each the completion), the same teacher (its top 20 with a tail at every completion token, random but
fixed), forward KL plus the cross-entropy, AdamW. Memory: the process's resident set once the weights, their
gradients and AdamW's state exist (`base`), and its peak over the steps (ru_maxrss; on a GPU,
`torch.cuda.max_memory_allocated`); a step adds `peak - base` (activations and the loss). Speed: examples/s over
the steps after the first.

    python benchmarks/kd_fused.py                       # the real 24 layers: a few minutes a variant on 2 cores
    python benchmarks/kd_fused.py --layers 2 --steps 2  # a quick look
    python benchmarks/kd_fused.py --report_only         # the table again, from results/kd_fused.json

Needs ../shared (the Qwen2.5-0.5B config).
"""
import argparse, json, resource, subprocess, sys, time
from pathlib import Path
import torch

from kd_common import SHARED, twin
from record import RESULTS, write_result

def rss_gib() -> float:
    "This process's resident set now."
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'): return int(line.split()[1]) / 2**20
    return float('nan')

def peak_gib() -> float:
    if torch.cuda.is_available(): return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

def one(a) -> dict:
    "Run variant `a.variant` in this process."
    import torch.nn.functional as F
    from distill_sbs.kd import TeacherTokens, fused_losses, kd_loss
    from distill_sbs.students import student_kind
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    model = twin('qwen2.5-0.5b', layers=a.layers or None).to(dev).train()
    if a.checkpointing: model.gradient_checkpointing_enable()  # both variants: the layers' activations recomputed in the backward pass
    kind, head = student_kind(model), model.get_output_embeddings()
    g = torch.Generator().manual_seed(0)
    V = model.config.vocab_size
    ids = torch.randint(0, 151_000, (a.batch, a.length), generator=g)
    labels = ids.clone(); labels[:, :a.length - a.completion] = -100
    n = int((labels[:, 1:] != -100).sum())
    top = torch.randn(n, 20, generator=g).log_softmax(-1) - 0.1  # 90% of the mass in the top 20
    teacher = TeacherTokens(ids=torch.randint(0, V, (n, 20), generator=g), logp=top, tail=torch.full((n,), float(torch.log(torch.tensor(1 - 0.9)))))
    batch = [x.to(dev) for x in (ids, torch.ones_like(ids), labels)]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    for p in model.parameters(): p.grad = torch.zeros_like(p)
    opt.step(); opt.zero_grad(set_to_none=False)  # AdamW's state exists, as after any first step
    if dev == 'cuda': torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() / 2**30 if dev == 'cuda' else rss_gib()
    times, losses = [], []
    for step in range(a.steps):
        t0 = time.perf_counter()
        if a.variant == 'today':
            logits, targets = kind.logits(model, *batch)
            ce, kd = F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100), kd_loss(logits, targets, teacher, chunk=a.chunk)
        else:
            ce, kd = fused_losses(*kind.hidden(model, *batch), head, teacher, chunk=a.chunk)
        loss = ce + kd
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=False)
        if dev == 'cuda': torch.cuda.synchronize()
        times.append(time.perf_counter() - t0); losses.append(round(loss.item(), 4))
        print(f'{a.variant} step {step}: {times[-1]:.1f} s, loss {losses[-1]}', file=sys.stderr, flush=True)
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
    timed = times[1:] or times
    return dict(variant=a.variant, base_gib=base, peak_gib=peak_gib(), step_adds_gib=peak_gib() - base, weights_gib=weights,
                examples_per_s=a.batch / (sum(timed) / len(timed)), seconds_per_step=sum(timed) / len(timed), losses=losses, target_tokens=n)

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--variant', choices=('today', 'fused'))
    p.add_argument('--layers', type=int, default=0, help='cut the twin to this many layers (0: all 24)')
    p.add_argument('--steps', type=int, default=3)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--length', type=int, default=256)
    p.add_argument('--completion', type=int, default=128)
    p.add_argument('--chunk', type=int, default=128, help='target tokens whose logits are made at once')
    p.add_argument('--checkpointing', action='store_true', help="gradient checkpointing in both variants, so a step's own activations are small")
    p.add_argument('--report_only', action='store_true', help='write the table from its results/*.json, running nothing')
    a = p.parse_args()
    if a.variant: print(json.dumps(one(a))); return
    name = 'kd_fused' + ('_checkpointing' if a.checkpointing else '')
    if a.report_only: rows, a = (lambda d: (d['rows'], argparse.Namespace(**{'checkpointing': False, **d['args']})))(json.loads((RESULTS/f'{name}.json').read_text()))
    else:
        rows = []
        for v in ('today', 'fused'):
            out = subprocess.run([sys.executable, __file__, '--variant', v, *sys.argv[1:]], capture_output=True, text=True, cwd=Path(__file__).parent)
            if out.returncode: sys.exit(out.stderr[-3000:])
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        (RESULTS/f'{name}.json').write_text(json.dumps(dict(rows=rows, args=vars(a), torch=torch.__version__, threads=torch.get_num_threads()), indent=1))
    today, fused = rows
    lines = [f"Qwen2.5-0.5B twin ({'all 24' if not a.layers else a.layers} layers, vocabulary 151,936), batch {a.batch} × {a.length} tokens "
             f"({today['target_tokens']:,} completion tokens), forward KL against a top-20 teacher plus the cross-entropy, AdamW, "
             f"{a.steps} steps (speed over the steps after the first), float32, {getattr(a, 'chunk', 512)} target tokens a chunk, " + ('gradient checkpointing in both, ' if a.checkpointing else '') + f"one process a variant. Weights {today['weights_gib']:.2f} GiB; with their "
             f"gradients and AdamW's state the process holds `base` before the first step; a step adds `peak - base`.\n",
             '| loss | base GiB | peak GiB | a step adds GiB | examples/s | s/step | losses |', '|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['variant']} | {r['base_gib']:.2f} | {r['peak_gib']:.2f} | {r['step_adds_gib']:.2f} | {r['examples_per_s']:.3f} | "
                     f"{r['seconds_per_step']:.1f} | {', '.join(map(str, r['losses']))} |")
    w = today['weights_gib']
    lines += ['', f"How the whole-step peak splits (today, fused): weights {w:.2f} GiB, their gradients {w:.2f}, AdamW's two moments {2 * w:.2f}, "
              f"the rest of `base` (Python, the libraries, the batch) {today['base_gib'] - 4 * w:.2f} and {fused['base_gib'] - 4 * w:.2f}, "
              f"then what the step adds (activations and the loss) {today['step_adds_gib']:.2f} and {fused['step_adds_gib']:.2f}."]
    lines += ['', f"The fused loss: a step adds {fused['step_adds_gib'] / today['step_adds_gib']:.0%} of what today's adds "
              f"({fused['step_adds_gib']:.2f} against {today['step_adds_gib']:.2f} GiB), whole-step peak {fused['peak_gib'] / today['peak_gib']:.0%} of today's, "
              f"at {fused['examples_per_s'] / today['examples_per_s']:.2f}× its speed."]
    write_result(name, 'The fused, completion-only loss against the whole logits' + (', with gradient checkpointing' if a.checkpointing else ''), '\n'.join(lines))

if __name__ == '__main__': main()
