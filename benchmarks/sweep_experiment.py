"""Chapter 8's sweep at full size on the built-in task: standard finetuning and distilling step-by-step, each on a
share of the training set, over several seeds; the paper's Figure 4 on a CPU. Prints the CPU, each cell's time, the
table (mean test accuracy over seeds with its 95% t-interval) and, per fraction, the gap between the methods beside
the seed-to-seed spread. Any other flag is a `distill-sbs train` flag shared by every cell.

    python benchmarks/sweep_experiment.py                                          # the chapter's grid: 2 methods x 3 fractions x 3 seeds
    python benchmarks/sweep_experiment.py --fractions 0.125,0.25,0.5,1 --seeds 0,1,2,3,4 --max_steps 300
    python benchmarks/sweep_experiment.py --loop                                   # also the same cells as a shell loop of
                                                                                   # `distill-sbs train` and `distill-sbs evaluate`
Writes sweep.png, sweep.csv and sweep.json beside the cells (--output_dir, default runs/sweep_experiment), and what it
measured to benchmarks/results/NAME.md (--results NAME, default sweep_experiment), which chapter 8 quotes.
"""
import os, subprocess, sys, time
from pathlib import Path
from record import machine, write_result

def share(f:float) -> str: return f'{f * 100:g}%'

def results_table(table, gaps, wall:float, cells:int) -> str:
    "The measurement as chapter 8 quotes it: per student and share of the data, each method's mean ± 95% t-interval and the paired gap."
    pts = lambda x: f'{x * 100:.1f}'
    secs = table.groupby('method').train_seconds.mean()
    out = [f'{cells} cells in {wall:.0f} s; training a cell took {secs.get("standard", float("nan")):.1f} s (standard finetuning) and '
           f'{secs.get("distilled", float("nan")):.1f} s (distilling step-by-step) on average.', '']
    for student, t in table.groupby('student', sort=False):
        seeds = int(t.seeds.max())
        out += [f'Student `{student}`: mean test accuracy over {seeds} seeds with its 95% t-interval (points), and the paired gap, '
                'distilled minus standard, seed by seed:', '',
                "| share of train | standard | distilling step-by-step | gap | gap larger than the seeds' spread? |", '|---|---|---|---|---|']
        for fraction in sorted(t.fraction.unique()):
            acc = {m: t[(t.fraction == fraction) & (t.method == m)].iloc[0] for m in ('standard', 'distilled')}
            g = gaps[(gaps.student == student) & (gaps.fraction == fraction)].iloc[0]
            out.append(f"| {share(fraction)} | {acc['standard'].accuracy:.1%} ± {pts(acc['standard'].interval)} | "
                       f"{acc['distilled'].accuracy:.1%} ± {pts(acc['distilled'].interval)} | {g.gap * 100:+.1f} ± {pts(g.interval)} | "
                       f"{'yes' if g.separated else 'no'} |")
        out.append('')
    out.append(f"The teacher's labels are right {table.teacher.mean():.1%} of the time; the majority guess gets {table.majority.mean():.1%}.")
    return '\n'.join(out)

def main(argv):
    os.environ.setdefault('TQDM_DISABLE', '1')
    loop = '--loop' in argv
    argv = [a for a in argv if a != '--loop']
    name = argv.pop(argv.index('--results') + 1) if '--results' in argv else 'sweep_experiment'
    argv = [a for a in argv if a != '--results']
    from distill_sbs.hardware import pick_hardware
    from distill_sbs.sweep import CHAPTER_GRID, cell_rows, parse_sweep, run_sweep, method_gaps, sweep_events
    print(f'{machine()}; {pick_hardware()}')  # the machine line its results file names
    given = {a.split('=')[0] for a in argv}
    defaults = [x for k, v in CHAPTER_GRID.items() if f'--{k}' not in given for x in (f'--{k}', str(v))]
    if '--lr' not in given: defaults += ['--lr', '3e-3']  # the tiny students' default when results/ was measured (today's: 1e-3, chapter 5a)
    sweep, a = parse_sweep([*defaults, *argv, *([] if '--output_dir' in given else ['--output_dir', 'runs/sweep_experiment'])])
    t0 = time.time()
    table = run_sweep(sweep, a.workers, a.batch_size_eval)
    wall = time.time() - t0
    for e in sweep_events(sweep.output_dir):  # every machine's log, in time order
        if e['event'] == 'finish': print(f"{e['cell']:32s} {e['steps']} steps, {e['train_seconds']:6.1f} s training, test accuracy {e['accuracy']:.1%}")
    print(f'\n{len(sweep.cells())} cells in {wall:.0f} s ({wall / len(sweep.cells()):.1f} s a cell, training and scoring)')
    print(table.drop(columns='student').to_string(index=False, float_format='{:.3f}'.format))
    gaps = method_gaps(cell_rows(sweep.output_dir))
    print('\n' + gaps.to_string(index=False, float_format='{:.3f}'.format))
    body = results_table(table, gaps, wall, len(sweep.cells()))
    if loop:  # the first cells again, fresh: in this process as the sweep runs them, then as a shell loop of one
              # `distill-sbs train` and one `distill-sbs evaluate` process per cell, the straightforward way
        from distill_sbs.grid import Sweep
        from distill_sbs.sweep import run_cell
        timed = Sweep(sweep.methods, sweep.fractions, sweep.students, sweep.seeds, sweep.settings, sweep.output_dir + '_timed')
        cells = timed.cells()[:4]
        t0 = time.time()
        for c in cells: run_cell(timed, c, a.batch_size_eval)
        sweep_s = time.time() - t0
        out = Path(sweep.output_dir + '_loop')
        t0 = time.time()
        for c in cells:
            d = out/Path(c.dir).relative_to(timed.output_dir)
            flags = [f'--{k}={v}' for k, v in {**timed.settings, **timed.methods[c.method]}.items()]
            subprocess.run(['distill-sbs', 'train', *flags, f'--from_pretrained={c.student}', f'--subsample={c.fraction}', f'--run={c.seed}',
                            f'--output_dir={d}'], check=True, capture_output=True)
            subprocess.run(['distill-sbs', 'evaluate', str(d), '--no_base', '--output_dir', str(d/'test')], check=True, capture_output=True)
        loop_s = time.time() - t0
        said = (f'{len(cells)} cells ({", ".join(c.name for c in cells)}), trained and scored afresh: {sweep_s:.1f} s in the sweep\'s one process, '
                f'{loop_s:.1f} s as a shell loop of `distill-sbs train` and `distill-sbs evaluate`, {loop_s / sweep_s:.1f}× as long.')
        print('\n' + said)
        body += '\n\n' + said
    write_result(name, "Chapter 8's sweep on the built-in task", body)

if __name__ == '__main__': main(sys.argv[1:])
