"""The README's main job, `distill-sbs experiment`, over seeds on both kinds of CPU: this one as it is, and this one with
oneDNN capped below its bf16 units (`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`, chapter 0f), the path a CPU
without them takes. Each run is the README's command with `--run SEED`, in its own process; a run already done is
reused, so a killed benchmark carries on by run.

    python benchmarks/main_job.py                                   # seeds 0-4 on both kinds, then seed 0 again on each (same numbers?)
    python benchmarks/main_job.py --seeds 0,1 --kinds avx2
    python benchmarks/main_job.py --time                            # also seed 0 afresh on each kind, alone, for the time the README states
    python benchmarks/main_job.py --lr 3e-3 --output_dir runs/main_job_lr3e-3 --results main_job_lr3e-3   # the tiny students' former default

Prints and writes to benchmarks/results/NAME.md: per kind and seed, both students' test accuracy and the gap; per kind,
the mean ± 95% t-interval of each and of the paired gap; seed by seed, how far the two kinds differ; whether a rerun
gave the same answers; and each run's wall time with the load average beside it (a busy machine's times are longer).
"""
import argparse, json, os, subprocess, sys, time
from pathlib import Path
from record import write_result

KINDS = {'bf16': {}, 'avx2': {'ONEDNN_MAX_CPU_ISA': 'AVX2', 'ATEN_CPU_CAPABILITY': 'avx2'}}  # the environment of each kind

def run(kind:str, seed:int, out:Path, extra:list) -> dict:
    "One `distill-sbs experiment` in its own process under `kind`'s environment, unless done; its accuracies, time and load."
    d = out/kind/f'seed{seed}'
    if not (d/'results.json').exists():
        env = {k: v for k, v in os.environ.items() if k not in ('ONEDNN_MAX_CPU_ISA', 'ATEN_CPU_CAPABILITY')} | KINDS[kind] | {'TQDM_DISABLE': '1'}
        load, t0 = os.getloadavg()[0], time.time()
        d.parent.mkdir(parents=True, exist_ok=True)
        with open(f'{d}.log', 'w') as log:
            subprocess.run(['distill-sbs', 'experiment', '--run', str(seed), '--output_dir', str(d), *extra], env=env, stdout=log, stderr=log, check=True)
        (d/'wall.json').write_text(json.dumps(dict(seconds=time.time() - t0, load_before=load, load_after=os.getloadavg()[0])))
    res, wall = json.loads((d/'results.json').read_text()), json.loads((d/'wall.json').read_text()) if (d/'wall.json').exists() else {}
    acc = {k: v['accuracy'] for k, v in res['systems'].items()}
    return dict(kind=kind, seed=seed, dir=str(d), **acc, gap=acc['distilled'] - acc['standard'], **wall)

def same_answers(a:str, b:str) -> bool:
    "Did two runs write the same predictions, answer for answer?"
    return (Path(a)/'predictions.jsonl').read_text() == (Path(b)/'predictions.jsonl').read_text()

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', default='0,1,2,3,4')
    p.add_argument('--kinds', default='bf16,avx2')
    p.add_argument('--no_repeat', action='store_true', help='skip rerunning the first seed on each kind')
    p.add_argument('--time', action='store_true', help='also the first seed afresh on each kind, for its time')
    p.add_argument('--output_dir', default='runs/main_job')
    p.add_argument('--results', default='main_job')
    a, extra = p.parse_known_args()
    from distill_sbs.evaluation import t_interval
    from distill_sbs.hardware import cpu_info, native_bf16
    seeds, kinds, out = [int(s) for s in a.seeds.split(',')], a.kinds.split(','), Path(a.output_dir)
    if not native_bf16() and 'bf16' in kinds:
        print(f'{cpu_info()[0]} has no bf16 units: its "bf16" runs take the same path as "avx2" ones')
    rows = []
    for seed in seeds:
        for kind in kinds:
            rows.append(r := run(kind, seed, out, extra))
            print(f"{kind:5s} seed {seed}: distilled {r['distilled']:.1%}, standard {r['standard']:.1%}, gap {r['gap'] * 100:+.1f} points; "
                  f"{r.get('seconds', float('nan')):.0f} s (load average {r.get('load_before', float('nan')):.1f})", flush=True)
    pts = lambda x: f'{x * 100:.1f}'
    body = [f"`distill-sbs experiment --run SEED{' ' + ' '.join(extra) if extra else ''}`, each in its own process.", '',
            '| CPU path | seed | distilled | standard | gap (points) | base | teacher | majority | wall s | load average at start |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        body.append(f"| {r['kind']} | {r['seed']} | {r['distilled']:.1%} | {r['standard']:.1%} | {r['gap'] * 100:+.1f} | {r['base']:.1%} | "
                    f"{r['teacher']:.1%} | {r['majority']:.1%} | {r.get('seconds', float('nan')):.0f} | {r.get('load_before', float('nan')):.1f} |")
    body += ['', f'Over seeds {a.seeds}: mean test accuracy ± 95% t-interval (points), and the paired gap, distilled − standard, seed by seed:', '',
             '| CPU path | distilled | standard | gap | gap above 0 on every seed? | interval leaves out 0? |', '|---|---|---|---|---|---|']
    for kind in kinds:
        k = [r for r in rows if r['kind'] == kind]
        (d, dh), (s, sh), (g, gh) = (t_interval([r[c] for r in k]) for c in ('distilled', 'standard', 'gap'))
        body.append(f"| {kind} | {d:.1%} ± {pts(dh)} | {s:.1%} ± {pts(sh)} | {g * 100:+.1f} ± {pts(gh)} | "
                    f"{'yes' if all(r['gap'] > 0 for r in k) else 'no'} | {'yes' if g - gh > 0 else 'no'} |")
    walls = [r['seconds'] for r in rows if 'seconds' in r]
    if walls: body.append(f"\nEach run took {min(walls):.0f} s to {max(walls):.0f} s of wall time, the load average at its start "
                          f"{min(r['load_before'] for r in rows if 'seconds' in r):.1f} to {max(r['load_before'] for r in rows if 'seconds' in r):.1f} on 2 cores.")
    if len(kinds) == 2:
        both = [(x, y) for x in rows for y in rows if x['kind'] == kinds[0] and y['kind'] == kinds[1] and x['seed'] == y['seed']]
        for c in ('distilled', 'standard'):
            diffs = [abs(x[c] - y[c]) * 100 for x, y in both]
            body.append(f'\n{c}: the two CPU paths differ by {sum(diffs) / len(diffs):.1f} points on average, seed by seed '
                        f'(largest {max(diffs):.1f}, smallest {min(diffs):.1f}).')
    if not a.no_repeat:
        body.append('')
        for kind in kinds:
            again = run(kind, seeds[0], out/'again', extra)
            first = next(r for r in rows if r['kind'] == kind and r['seed'] == seeds[0])
            same = same_answers(first['dir'], again['dir'])
            body.append(f"Seed {seeds[0]} rerun on the {kind} path: {'the same' if same else 'DIFFERENT'} {len(Path(first['dir'], 'predictions.jsonl').read_text().splitlines())} "
                        f"predictions (distilled {again['distilled']:.1%}, standard {again['standard']:.1%}).")
    if a.time:
        body.append('')
        for kind in kinds:
            t = run(kind, seeds[0], out/f'timed_{int(time.time())}', extra)
            first = next(r for r in rows if r['kind'] == kind and r['seed'] == seeds[0])
            body.append(f"Seed {seeds[0]} afresh on the {kind} path, for its time: {t['seconds']:.0f} s (load average {t['load_before']:.1f} at start, "
                        f"{t['load_after']:.1f} at the end); {'the same' if same_answers(first['dir'], t['dir']) else 'DIFFERENT'} predictions as its first run.")
    text = '\n'.join(body)
    print(text)
    write_result(a.results, "The README's main job over seeds, on both CPU paths", text)

if __name__ == '__main__': main()
