"""The paper's claim on a real pretrained student: SmolLM2-135M-Instruct zero-shot, after standard finetuning, after
distilling step-by-step and as a rationale-first student, at the same steps, over seeds and shares of the training
data, on the built-in multi-step task and on CommonsenseQA with PaLM's rationales (a subset, from ../shared). LoRA
beside full finetuning at one setting. Each dataset is one chapter-8 sweep, so a killed run carries on by cell.

    python benchmarks/smollm2_sweep.py                                    # the grid the chapters quote (about 2 hours, 2 cores)
    python benchmarks/smollm2_sweep.py --datasets arith --seeds 0,1       # a smaller one
    python benchmarks/smollm2_sweep.py --n_test 0 --max_steps 200 --batch_size 16   # on a GPU: CommonsenseQA's whole test set, longer runs

Prints the CPU (or GPU), each cell, and per dataset and share of the data: each method's mean test accuracy over seeds
with its 95% t-interval, the paired seed-by-seed gaps against standard finetuning with theirs, and what an answer
costs (tokens, and answers per second measured interleaved after a warm-up). Writes benchmarks/results/NAME.md (the
tables), NAME.json (every cell) and NAME.png (accuracy against the share of the data, the teacher as a line), which
chapter 8 shows. With ../shared absent and no Hub, it says so and stops.
"""
import argparse, json, os, statistics, time
from pathlib import Path
from record import RESULTS, machine, write_result

SHARED = Path(__file__).resolve().parents[2]/'shared'
METHODS = ('standard', 'distilled', 'cot')
LABELS = {'standard': 'standard finetuning', 'distilled': 'distilling step-by-step', 'cot': 'rationale first',
          'distilled-lora': 'distilling step-by-step, LoRA', 'base': 'zero-shot', 'base_cot': 'zero-shot chain of thought'}

def cqa_subset(out:Path, n_train:int, n_test:int) -> str:
    "The first `n_train` training and `n_test` test questions of ../shared's CommonsenseQA with PaLM's rationales, in the paper's layout."
    src, d = SHARED/'data'/'cqa', out/'cqa'
    for split, n in (('train', n_train), ('test', n_test)):
        rows = (src/f'cqa_{split}.json').read_text().splitlines()
        n = n or len(rows)
        cot = [o for i in range(10) if (src/'palm'/f'{split}_CoT_{i}.json').exists() for o in json.loads((src/'palm'/f'{split}_CoT_{i}.json').read_text())]
        (d/'palm').mkdir(parents=True, exist_ok=True)
        (d/f'cqa_{split}.json').write_text('\n'.join(rows[:n]) + '\n')
        (d/'palm'/f'{split}_CoT_0.json').write_text(json.dumps(cot[:n]))
    return str(out)

def answer_costs(dirs:dict, inputs:list, limits:dict, batch_size:int, rounds:int) -> dict:
    "Answers per second for each system, timed interleaved (round by round, every system once a round) after a warm-up batch; the median round."
    from distill_sbs.inference import load_run
    students = {k: load_run(d) for k, d in dirs.items()}
    for k, s in students.items(): s.generations(inputs[:batch_size], 'predict', limits[k], batch_size)  # warm-up
    times = {k: [] for k in students}
    for _ in range(rounds):
        for k, s in students.items():
            t0 = time.perf_counter(); s.generations(inputs, 'predict', limits[k], batch_size); times[k].append(time.perf_counter() - t0)
    return {k: dict(answers_per_second=len(inputs) / statistics.median(v), seconds=v) for k, v in times.items()}

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', default=None, help='a Hub id or folder (default: SmolLM2-135M-Instruct, the Hub or ../shared)')
    p.add_argument('--datasets', default='arith,cqa')
    p.add_argument('--fractions', default='0.25,1')
    p.add_argument('--seeds', default='0,1,2')
    p.add_argument('--max_steps', type=int, default=30)
    p.add_argument('--batch_size', type=int, default=4)
    p.add_argument('--lr', type=float, default=2e-4)
    p.add_argument('--n_train', type=int, default=120, help='training questions before the validation carve (CommonsenseQA: the first ones)')
    p.add_argument('--n_test', type=int, default=100, help='test questions (CommonsenseQA: the first ones; 0: all 1,221)')
    p.add_argument('--max_rationale_length', type=int, default=96)
    p.add_argument('--lora_r', type=int, default=16, help='LoRA rank of the LoRA run beside full finetuning (0: none)')
    p.add_argument('--lora_lr', type=float, default=1e-3)
    p.add_argument('--lora_seeds', default=None, help='seeds of the LoRA runs (default: --seeds)')
    p.add_argument('--report_only', action='store_true', help='train nothing: report the cells already done (zero-shot and costs only if measured)')
    p.add_argument('--rounds', type=int, default=3, help='interleaved timing rounds for answers per second')
    p.add_argument('--batch_size_eval', type=int, default=32)
    p.add_argument('--output_dir', default='runs/smollm2_sweep')
    p.add_argument('--results', default='smollm2_sweep')
    a = p.parse_args()
    os.environ.setdefault('TQDM_DISABLE', '1')
    import torch, pandas as pd
    from distill_sbs.data import smollm2
    from distill_sbs.evaluation import evaluate
    from distill_sbs.grid import Sweep, METHODS as ALL
    from distill_sbs.sweep import run_sweep, cell_rows, method_gaps, sweep_table
    from distill_sbs.hardware import pick_hardware
    model = a.model or smollm2(shared=SHARED) or p.error('SmolLM2 is neither on the Hub nor in ../shared (python ../shared/models/smollm2-135m-instruct/to_hf.py needs `gguf`)')
    print(f'{machine()}; {pick_hardware()}' + (f'; GPU: {torch.cuda.get_device_name(0)}' if torch.cuda.is_available() else ''))
    fractions, seeds = [float(f) for f in a.fractions.split(',')], [int(s) for s in a.seeds.split(',')]
    out, t_all = Path(a.output_dir), time.time()
    rows, tables, gaps, zero, costs = [], [], [], {}, {}
    for ds in a.datasets.split(','):
        data = dict(dataset='arith', n_train=a.n_train, n_test=a.n_test or 500) if ds == 'arith' else \
               dict(dataset=ds, data_dir=cqa_subset(out/'data', a.n_train, a.n_test))
        settings = dict(**data, max_steps=a.max_steps, eval_steps=a.max_steps, batch_size=a.batch_size, lr=a.lr, warmup_steps=0,
                        cot_formats='zs_cot', max_rationale_length=a.max_rationale_length, no_log=True)
        sweep = Sweep(METHODS, fractions, (model,), seeds, settings, str(out/ds))
        print(f'== {ds}: {len(sweep.cells())} cells, {a.max_steps} steps of {a.batch_size} each ==', flush=True)
        t0 = time.time()
        if not a.report_only:
            run_sweep(sweep, 1, a.batch_size_eval)
            print(f'{ds}: grid done in {time.time() - t0:.0f} s (cells already done were reused)')
        got = [dict(r, dataset=ds) for r in cell_rows(out/ds)] if (out/ds).exists() else []
        if not got: print(f'{ds}: no cell done yet'); continue
        if a.lora_r and ds == 'arith':  # LoRA beside full finetuning: distilling step-by-step on all the data, the same seeds and steps
            lora_seeds = [int(s) for s in a.lora_seeds.split(',')] if a.lora_seeds else seeds
            ls = Sweep({'distilled-lora': dict(ALL['distilled'], lora_r=a.lora_r, lr=a.lora_lr)}, (max(fractions),), (model,), lora_seeds, settings, str(out/f'{ds}_lora'))
            if not a.report_only: run_sweep(ls, 1, a.batch_size_eval)
            if (out/f'{ds}_lora').exists(): got += [dict(r, dataset=ds) for r in cell_rows(out/f'{ds}_lora')]
        for r in got:  # what an answer costs, from each cell's own scoring (one pass each, cell after cell)
            res = json.loads((out/(ds + ('_lora' if r['method'].endswith('lora') else ''))/r['dir']/'test'/'results.json').read_text())
            s = next(v for k, v in res['systems'].items() if k in res['runs'])
            r.update(tokens_per_answer=s.get('tokens_per_answer'), no_answer=s.get('no_answer'))
        rows += got
        tables.append(sweep_table(out/ds, got).assign(dataset=ds))  # chapter 8's mean and t-interval per method and share
        gaps += [dict(g, dataset=ds, method=m) for m in ('distilled', 'cot') for g in method_gaps(got, m).to_dict('records')]
        top = {r['method']: out/ds/r['dir'] for r in got if r['fraction'] == max(fractions) and r['seed'] == seeds[0] and r['method'] in METHODS}
        zdir = out/ds/'zero_shot'
        if not (zdir/'results.json').exists() and 'cot' in top and not a.report_only: evaluate([str(top['cot'])], zdir, base=True, batch_size=a.batch_size_eval)
        if (zdir/'results.json').exists():
            zres = json.loads((zdir/'results.json').read_text())
            zero[ds] = {k: zres['systems'][k] for k in ('base', 'base_cot', 'teacher', 'majority') if k in zres['systems']}
        from distill_sbs.training import run_config
        from distill_sbs.data import load_data
        cost_file = out/ds/'answer_costs.json'
        if not cost_file.exists() and len(top) == len(METHODS) and not a.report_only:
            inputs = list(load_data(sweep.config(sweep.cells()[0]))['test']['input'])
            limits = {k: run_config(d)['gen_max_len'] for k, d in top.items()}
            cost_file.write_text(json.dumps(answer_costs(top, inputs, limits, a.batch_size_eval, a.rounds), indent=1))
        if cost_file.exists():
            costs[ds] = json.loads(cost_file.read_text())
            print(f'{ds}: answers per second, interleaved: ' + ', '.join(f"{k} {v['answers_per_second']:.1f}" for k, v in costs[ds].items()), flush=True)
    wall = time.time() - t_all
    cells, table = pd.DataFrame(rows), pd.concat(tables, ignore_index=True)
    body = report(cells, table, pd.DataFrame(gaps), zero, costs, a, wall)
    print(body)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS/f'{a.results}.json').write_text(json.dumps(dict(cells=rows, gaps=gaps, zero_shot=zero, costs=costs), indent=1, default=float) + '\n')
    plot(table, zero).savefig(RESULTS/f'{a.results}.png', dpi=110, bbox_inches='tight')
    write_result(a.results, 'The paper\'s claim on a real pretrained student: SmolLM2-135M-Instruct', body)

def pct(x): return f'{x:.1%}'
def pts(x): return f'{x * 100:.1f}'

def report(cells, table, gaps, zero, costs, a, wall) -> str:
    "The tables the chapters quote: per dataset, method and share, the mean over seeds ± 95% t-interval (`table`, from `sweep_table`); paired gaps; costs; LoRA."
    n_cells = len(cells)
    out = [f'{n_cells} cells, {a.max_steps} optimizer steps of {a.batch_size} examples each (every method the same steps), learning rate {a.lr:g} '
           f'(LoRA {a.lora_lr:g}), {a.n_train} training questions before a 10% validation carve, {a.n_test or "all"} test questions; '
           f'{wall:.0f} s for this invocation (cells done before are reused).', '']
    for ds, t in cells.groupby('dataset', sort=False):
        events = [json.loads(l) for d in (ds, f'{ds}_lora') if (Path(a.output_dir)/d/'sweep_log.jsonl').exists()
                  for l in (Path(a.output_dir)/d/'sweep_log.jsonl').read_text().splitlines()]
        span = max(e['time'] for e in events) - min(e['time'] for e in events)
        z = zero.get(ds)
        said = f"Its {len(t)} cells took {span / 60:.0f} minutes of wall time from the first start to the last finish, on a CPU shared with other jobs. " + ((f"Zero-shot: {pct(z['base']['accuracy'])} plainly, " + (f"{pct(z['base_cot']['accuracy'])} with zero-shot chain of thought; " if 'base_cot' in z else '; '))
                if z else 'Zero-shot: not measured in this run; ')
        out += [f'## {ds}', '', said + f"the teacher's labels {pct(t.teacher.mean())}; the majority guess {pct(t.majority.mean())} (n = {int(t.n_test.iloc[0])} test questions).", '',
                '| share of train | method | seeds | mean accuracy ± 95% t | per seed | train s a step | tokens per answer |', '|---|---|---|---|---|---|---|']
        for r in table[table.dataset == ds].sort_values(['fraction', 'method']).itertuples():
            g = t[(t.fraction == r.fraction) & (t.method == r.method)]
            spread = f'{pct(r.accuracy)} ± {pts(r.interval)}' if r.seeds > 1 else f'{pct(r.accuracy)} (one seed)'
            out.append(f"| {r.fraction:.0%} | {LABELS[r.method]} | {r.seeds} | {spread} | {' '.join(f'{x:.0%}' for x in g.sort_values('seed').accuracy)} | "
                       f"{(g.train_seconds / g.steps).mean():.1f} | {g.tokens_per_answer.mean():.1f} |")
        out += ['', 'Paired gaps against standard finetuning, seed by seed (points):', '', '| share of train | method | gap ± 95% t | per seed | interval leaves out 0? |', '|---|---|---|---|---|']
        for g in (gaps[gaps.dataset == ds].sort_values(['fraction', 'method']).itertuples() if len(gaps) else []):
            out.append(f"| {g.fraction:.0%} | {LABELS[g.method]} − standard | {g.gap * 100:+.1f} ± {pts(g.interval)} | {g.per_seed} | {'yes' if g.separated else 'no'} |")
        c = costs.get(ds)
        out += ['', (f'Answers per second on the {int(t.n_test.iloc[0])} test questions (seed {a.seeds.split(",")[0]}, all the data), timed interleaved, '
                     f'{len(next(iter(c.values()))["seconds"])} rounds after a warm-up batch, the median round: ' + ', '.join(f"{LABELS[k]} {v['answers_per_second']:.1f}" for k, v in c.items()) + '.')
                if c else 'Answers per second: not measured in this run.', '']
    return '\n'.join(out)

def plot(table, zero):
    "Accuracy against the share of the training data per dataset: a line per method (mean over seeds, its interval shaded), the teacher and zero-shot as lines."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    sets = list(dict.fromkeys(table.dataset))
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    colors = {'standard': '#1f77b4', 'distilled': '#d62728', 'cot': '#2ca02c'}
    for ax, ds in zip(axes[0], sets):
        t = table[(table.dataset == ds) & table.method.isin(colors)]
        for m, c in colors.items():
            line = t[t.method == m].sort_values('fraction')
            if line.empty: continue
            ax.plot(line.fraction, line.accuracy, 'o-', color=c, label=LABELS[m])
            ax.fill_between(line.fraction, line.accuracy - line.interval, line.accuracy + line.interval, color=c, alpha=0.15, lw=0)
        ax.axhline(t.teacher.mean(), color='#7f7f7f', ls='--', lw=1, label='teacher (its labels)')
        if ds in zero: ax.axhline(zero[ds]['base']['accuracy'], color='k', ls=':', lw=1, label='zero-shot')
        fr = sorted(t.fraction.unique())
        ax.set_xscale('log', base=2); ax.set_xticks(fr, [f'{x:.0%}' for x in fr]); ax.minorticks_off()
        ax.set(ylim=(0, 1.02), xlabel='share of the training set', ylabel='test accuracy', title=f'SmolLM2-135M-Instruct on {ds}')
        ax.spines[['top', 'right']].set_visible(False)
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig

if __name__ == '__main__': main()
