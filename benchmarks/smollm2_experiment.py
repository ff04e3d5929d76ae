"""The real pretrained student: SmolLM2-135M-Instruct zero-shot, after standard finetuning and after distilling
step-by-step, at the same steps, on the built-in task, for several seeds (`distill-sbs experiment` each time).

Prints, per seed and system: test accuracy with its 95% interval, tokens generated per answer, the share of answers
that stopped on their own, and the time. Offline it converts ../shared's GGUF once (needs `gguf`); with the Hub,
pass `--model HuggingFaceTB/SmolLM2-135M-Instruct` or `--model Qwen/Qwen2.5-0.5B-Instruct`.

    python benchmarks/smollm2_experiment.py --seeds 0 1 2 --max_steps 30
"""
import argparse, json, time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2]/'shared'

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default=None, help='a Hub id or folder (default: SmolLM2 from ../shared)')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument('--max_steps', type=int, default=30)
    p.add_argument('--batch_size', type=int, default=8)
    p.add_argument('--lr', type=float, default=1e-4)
    p.add_argument('--n_train', type=int, default=400)
    p.add_argument('--n_test', type=int, default=100)
    p.add_argument('--gen_max_len', type=int, default=32)
    p.add_argument('--out', default='/tmp/smollm2_experiment')
    a = p.parse_args()
    import torch
    from distill_sbs.hardware import cpu_info, native_bf16
    from distill_sbs.multitask import TrainConfig
    from distill_sbs.experiment import experiment
    from distill_sbs.data import smollm2
    model = a.model or smollm2(shared=SHARED) or p.error('SmolLM2 is neither on the Hub nor in ../shared')
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else cpu_info()[0]
    print(f'device: {dev}; multiplies bf16 natively: {native_bf16("cuda" if torch.cuda.is_available() else "cpu")}')
    print(f'{model}: {a.max_steps} steps a student, batch {a.batch_size}, lr {a.lr}, {a.n_train} training problems, '
          f'{a.n_test} test questions, answers of at most {a.gen_max_len} tokens')
    rows = []
    for seed in a.seeds:
        t0 = time.time()
        cfg = TrainConfig(from_pretrained=model, run=seed, n_train=a.n_train, n_test=a.n_test, max_steps=a.max_steps,
                          eval_steps=a.max_steps, batch_size=a.batch_size, lr=a.lr, warmup_steps=0, gen_max_len=a.gen_max_len,
                          no_log=True, output_dir=f'{a.out}/seed{seed}')
        _, res = experiment(cfg, output_rationale=False)
        took = time.time() - t0
        for name in ('base', 'standard', 'distilled'):
            s = res['systems'][name]
            rows.append((seed, name, s['accuracy'], s['ci95'], s['tokens_per_answer'], s['stopped'],
                         res['runs'].get(name, {}).get('train_seconds')))
        print(f'seed {seed}: {took:.0f} s', flush=True)
    print('\n| seed | system | accuracy (95% interval) | tokens per answer | stopped on its own | train s |\n|---|---|---|---|---|---|')
    for seed, name, acc, ci, tok, stop, secs in rows:
        print(f'| {seed} | {name} | {acc:.1%} ({ci[0]:.1%} to {ci[1]:.1%}) | {tok:.1f} | {stop:.0%} | {secs or ""} |')
    for name in ('base', 'standard', 'distilled'):
        accs = [r[2] for r in rows if r[1] == name]
        print(f'{name}: mean accuracy {sum(accs) / len(accs):.1%} over {len(accs)} seeds (min {min(accs):.1%}, max {max(accs):.1%})')
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out)/'summary.json').write_text(json.dumps(rows, indent=1))

if __name__ == '__main__': main()
