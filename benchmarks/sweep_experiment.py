"""Chapter 8's sweep at full size on the built-in task: standard finetuning and distilling step-by-step, each on a
share of the training set, over several seeds; the paper's Figure 4 on a CPU. Prints the CPU, each cell's time, the
table (mean test accuracy over seeds with its 95% t-interval) and, per fraction, the gap between the methods beside
the seed-to-seed spread. Any other flag is a `distill-sbs train` flag shared by every cell.

    python benchmarks/sweep_experiment.py                                          # the chapter's grid: 2 methods x 3 fractions x 3 seeds
    python benchmarks/sweep_experiment.py --fractions 0.125,0.25,0.5,1 --seeds 0,1,2,3,4 --max_steps 300
    python benchmarks/sweep_experiment.py --loop                                   # also the same cells as a shell loop of
                                                                                   # `distill-sbs train` and `distill-sbs evaluate`
Writes sweep.png, sweep.csv and sweep.json beside the cells (--output_dir, default runs/sweep_experiment).
"""
import json, os, subprocess, sys, time
from pathlib import Path

def main(argv):
    os.environ.setdefault('TQDM_DISABLE', '1')
    loop = '--loop' in argv
    argv = [a for a in argv if a != '--loop']
    from distill_sbs.hardware import cpu_info, native_bf16, pick_hardware
    from distill_sbs.sweep import CHAPTER_GRID, cell_rows, parse_sweep, run_sweep, method_gaps
    print(f'{cpu_info()[0]}; multiplies bf16 natively: {native_bf16()}; {pick_hardware()}')
    given = {a.split('=')[0] for a in argv}
    defaults = [x for k, v in CHAPTER_GRID.items() if f'--{k}' not in given for x in (f'--{k}', str(v))]
    sweep, a = parse_sweep([*defaults, *argv, *([] if '--output_dir' in given else ['--output_dir', 'runs/sweep_experiment'])])
    t0 = time.time()
    table = run_sweep(sweep, a.workers, a.batch_size_eval)
    wall = time.time() - t0
    for line in Path(sweep.output_dir, 'sweep_log.jsonl').read_text().splitlines():
        e = json.loads(line)
        if e['event'] == 'finish': print(f"{e['cell']:32s} {e['steps']} steps, {e['train_seconds']:6.1f} s training, test accuracy {e['accuracy']:.1%}")
    print(f'\n{len(sweep.cells())} cells in {wall:.0f} s ({wall / len(sweep.cells()):.1f} s a cell, training and scoring)')
    print(table.drop(columns='student').to_string(index=False, float_format='{:.3f}'.format))
    print('\n' + method_gaps(cell_rows(sweep.output_dir)).to_string(index=False, float_format='{:.3f}'.format))
    if loop:  # the first cells again, fresh: in this process as the sweep runs them, then as a shell loop of one
              # `distill-sbs train` and one `distill-sbs evaluate` process per cell, the straightforward way
        from distill_sbs.sweep import Sweep, run_cell
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
        print(f'\n{len(cells)} cells ({", ".join(c.name for c in cells)}): the sweep {sweep_s:.1f} s; a shell loop of train + evaluate '
              f'{loop_s:.1f} s: the sweep is {loop_s / sweep_s:.2f}x faster')

if __name__ == '__main__': main(sys.argv[1:])
