"""Why the main job's standard student stalls, and what the tiny students' learning rate has to do with it: validation
accuracy every 100 steps over seeds, for both students at 3e-3 (the tiny students' former default) and at 1e-3 (today's),
read from `benchmarks/main_job.py`'s runs, and for standard finetuning at 3e-3 trained three times as long (its own
`distill-sbs train --model_type standard` runs, reused if done).

    python benchmarks/main_job.py --lr 3e-3 --output_dir runs/main_job_lr3e-3 --results main_job_lr3e-3
    python benchmarks/main_job.py --output_dir runs/main_job_lr1e-3
    python benchmarks/standard_stall.py

Prints, per run, the validation accuracy at each evaluation and the first step at which it reached --escape (45%,
between the plateau and the distilled student's level); writes benchmarks/results/NAME.md and NAME.png.
"""
import argparse, json, os, subprocess
from pathlib import Path
from record import RESULTS, write_result

LONGER = ['--max_steps', '1500', '--lr', '3e-3']  # standard finetuning at the former default, three times as long

def curve(run_dir:Path) -> list[tuple[int, float]]:
    "(step, validation accuracy) of a finished run, from its Trainer state."
    log = json.loads((run_dir/'trainer_state.json').read_text())['log_history']
    return [(e['step'], e['eval_accuracy']) for e in log if 'eval_accuracy' in e]

def escape(points:list, level:float) -> int|None:
    "The first step whose validation accuracy reached `level` (None: never)."
    return next((s for s, a in points if a >= level), None)

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--seeds', default='0,1,2,3,4')
    p.add_argument('--longer_seeds', default='0,1,2', help='seeds of the longer standard runs')
    p.add_argument('--kind', default='bf16', help="the CPU path of main_job.py's runs to read (bf16 or avx2)")
    p.add_argument('--before', default='runs/main_job_lr3e-3', help="main_job.py's runs at lr 3e-3")
    p.add_argument('--after', default='runs/main_job_lr1e-3', help="main_job.py's runs at lr 1e-3")
    p.add_argument('--escape', type=float, default=0.45)
    p.add_argument('--output_dir', default='runs/standard_stall')
    p.add_argument('--results', default='standard_stall')
    a = p.parse_args()
    curves = {}  # (who, lr, seed) -> points
    for lr, root in (('3e-3', a.before), ('1e-3', a.after)):
        for s in [int(x) for x in a.seeds.split(',')]:
            for who in ('distilled', 'standard'):
                d = Path(root)/a.kind/f'seed{s}'/who
                if (d/'trainer_state.json').exists(): curves[(who, lr, s)] = curve(d)
    for s in [int(x) for x in a.longer_seeds.split(',')]:
        d = Path(a.output_dir)/'max_steps'/f'seed{s}'
        if not (d/'run.json').exists():
            subprocess.run(['distill-sbs', 'train', '--model_type', 'standard', '--run', str(s), *LONGER, '--no_log', '--overwrite',
                            '--output_dir', str(d)], check=True, capture_output=True, env=os.environ | {'TQDM_DISABLE': '1'})
        curves[('standard, 1,500 steps', '3e-3', s)] = curve(d)
    rows = ['| student | learning rate | seed | validation accuracy at steps 100, 200, ... | best | first step at or above ' + f'{a.escape:.0%} |',
            '|---|---|---|---|---|---|']
    for (who, lr, s), pts in curves.items():
        e = escape(pts, a.escape)
        rows.append(f"| {who} | {lr} | {s} | {' '.join(f'{x:.0%}' for _, x in pts)} | {max(x for _, x in pts):.1%} | {e if e else 'never'} |")
    for (who, lr) in dict.fromkeys((w, l) for w, l, _ in curves):
        bests = [max(x for _, x in pts) for (w, l, _), pts in curves.items() if (w, l) == (who, lr)]
        stuck = sum(escape(pts, a.escape) is None for (w, l, _), pts in curves.items() if (w, l) == (who, lr))
        rows.append(f'\n{who} at {lr}: best validation accuracy {min(bests):.1%} to {max(bests):.1%} over {len(bests)} seeds; '
                    f'{stuck} of {len(bests)} never reached {a.escape:.0%}.')
    body = '\n'.join([f"Main job's runs read from `{a.before}/{a.kind}` and `{a.after}/{a.kind}` (`benchmarks/main_job.py`); the longer standard runs "
                      f"are `distill-sbs train --model_type standard {' '.join(LONGER)}`. Validation: the 200 questions the main job validates on.", '', *rows])
    print(body)
    plot(curves, a.escape).savefig(RESULTS/f'{a.results}.png', dpi=110, bbox_inches='tight')
    write_result(a.results, "Why the main job's standard student stalls", body)

def plot(curves:dict, level:float):
    "Validation accuracy against step, a line per run, a panel per learning rate, a colour per student."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    colors = {'distilled': '#d62728', 'standard': '#1f77b4', 'standard, 1,500 steps': '#17becf'}
    names = {'distilled': 'distilling step-by-step', 'standard': 'standard finetuning', 'standard, 1,500 steps': 'standard finetuning, 1,500 steps'}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, lr in zip(axes, ('3e-3', '1e-3')):
        seen = set()
        for (who, l, s), pts in curves.items():
            if l != lr: continue
            ax.plot(*zip(*pts), '-', color=colors[who], lw=1.2, alpha=0.8, label=None if who in seen else names[who])
            seen.add(who)
        ax.axhline(level, color='k', ls=':', lw=1)
        ax.set(xlabel='optimizer step', ylim=(0, 1), title=f'learning rate {lr}' + (' (the former default)' if lr == '3e-3' else ' (the default)'))
        ax.spines[['top', 'right']].set_visible(False); ax.legend(frameon=False, fontsize=8)
    axes[0].set_ylabel('validation accuracy (a line per seed)')
    fig.suptitle('the built-in task, tiny T5'); fig.tight_layout()
    return fig

if __name__ == '__main__': main()
