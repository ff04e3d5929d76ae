"""`distill-sbs sweep --node R --nodes N`, how each machine of a Vertex AI job runs a sweep, played by real processes on
one shared folder: each machine runs its own share of the grid (the shares disjoint, together the whole grid, a
machine's GPUs sharing its share) and keeps its own event log; the primary (node 0) waits for the others' cells, with
no limit unless given one, then writes the report; the others exit without one; a primary given a --wait_timeout and
left waiting with no cell finishing fails with one line; bad machine numbers get one line before anything starts."""
import json, signal, subprocess, sys, time, types
import pytest
from conftest import ROOT, cli, error_line, ok, refused

# A cell in a second or two: one step, four test questions, four tokens an answer
TINY = ['--methods', 'standard', '--n_train', 40, '--n_test', 4, '--batch_size', 4, '--max_steps', 1, '--eval_steps', 1,
        '--gen_max_len', 4, '--warmup_steps', 0, '--no_log', 'true']
DISTILL_SBS = [sys.executable, '-c', 'import sys; from distill_sbs.cli import main; sys.exit(main(sys.argv[1:]))']  # `distill-sbs`, by this Python

def machine(out, *flags) -> list[str]:
    "One machine's command line: the tiny sweep in `out`, with its own flags."
    return [*DISTILL_SBS, 'sweep', *map(str, TINY), '--output_dir', str(out), *map(str, flags)]

def run(cmd, timeout=300): return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)

REPORT = ('sweep.csv', 'sweep.json', 'sweep.png')

def done(out, names) -> list[str]: return [n for n in names if (out/n/'test'/'results.json').exists()]

def finished_by(out) -> dict:
    "(node, worker) -> the cells it finished, from the sweep's logs."
    from distill_sbs.sweep import sweep_events
    by = {}
    for e in sweep_events(out):
        if e['event'] == 'finish': by.setdefault((e['node'], e['worker']), []).append(e['cell'])
    return by

@pytest.mark.slow
def test_two_machines_share_the_grid_and_the_primary_waits_for_it(tmp_path):
    out = tmp_path/'sweep'
    grid = [f'tiny/standard/{f}/seed{s}' for f in ('0.5', '1') for s in (0, 1)]  # a grid's order: fraction, then seed
    flags = ['--fractions', '0.5,1', '--seeds', '0,1', '--nodes', 2, '--wait_poll', 0.1]
    log0 = tmp_path/'node0.out'
    with open(log0, 'w') as o, open(tmp_path/'node0.err', 'w') as e:
        primary = subprocess.Popen(machine(out, *flags, '--node', 0), cwd=ROOT, stdout=o, stderr=e, text=True)
    try:
        deadline = time.time() + 240
        while 'waiting for 2 cells' not in log0.read_text() and primary.poll() is None and time.time() < deadline: time.sleep(0.1)
        time.sleep(1)  # some ten looks at the folder
        assert primary.poll() is None, ('the primary should wait for node 1', log0.read_text(), (tmp_path/'node0.err').read_text()[-3000:])
        assert done(out, grid) == [grid[0], grid[2]], 'the primary ran its own share, every 2nd cell, and nothing else'
        assert not (out/'sweep.csv').exists() and not (out/'sweep.png').exists()
        primary.send_signal(signal.SIGSTOP)  # a slow primary: whatever report there is once node 1 exits, node 1 wrote it
        other = ok(run(machine(out, *flags, '--node', 1, '--workers', 2)))  # node 1, its two workers under torchrun
        assert 'node 1: my 2 cells are done; node 0, the primary, writes the report' in other.stdout
        assert done(out, grid) == grid and not any((out/f).exists() for f in REPORT), 'node 1 writes no report'
        primary.send_signal(signal.SIGCONT)
        assert primary.wait(120) == 0, (tmp_path/'node0.err').read_text()[-3000:]
    finally:
        if primary.poll() is None: primary.send_signal(signal.SIGCONT); primary.kill(); primary.wait()
    assert 'rows from 4 cells' in log0.read_text() and all((out/f).exists() for f in REPORT)
    assert sorted(c['dir'] for c in json.loads((out/'sweep.json').read_text())['cells']) == grid
    by = finished_by(out)
    assert by == {(0, 0): [grid[0], grid[2]], (1, 0): [grid[1]], (1, 1): [grid[3]]}, by  # each cell once, by its machine's workers
    logs = {f.name: {json.loads(l)['node'] for l in f.read_text().splitlines()} for f in out.glob('sweep_log*')}
    assert logs == {'sweep_log.node0.jsonl': {0}, 'sweep_log.node1.jsonl': {1}}, logs  # a log per machine: no file two machines append to

@pytest.mark.slow
def test_a_primary_left_waiting_fails_with_one_line(tmp_path):
    out = tmp_path/'sweep'
    grid = [f'tiny/standard/{f}/seed0' for f in ('0.5', '1')]
    res = run(machine(out, '--fractions', '0.5,1', '--seeds', 0, '--nodes', 2, '--node', 0, '--wait_poll', 0.1, '--wait_timeout', 1))
    line = refused(res, '1 of 2 cells unfinished after 1 s with none finishing: tiny/standard/1/seed0;', 'sweep')  # node 1 never came
    assert '--wait_timeout' in line and 'waiting for 1 cells' in res.stdout
    assert done(out, grid) == grid[:1] and not any((out/f).exists() for f in REPORT)

@pytest.mark.parametrize('flags, says', [
    (['--node', 2, '--nodes', 2], '--node 2 with --nodes 2: a machine is numbered from 0 (the primary) to 1'),
    (['--node', -1, '--nodes', 2], '--node -1 with --nodes 2: a machine is numbered from 0'),
    (['--node', 1], '--node 1 with --nodes 1: a machine is numbered from 0 (the primary) to 0'),
    (['--nodes', 0], '--nodes 0: a job has at least 1 machine'),
    (['--nodes', 'two'], "--nodes: invalid int value: 'two'"),
    (['--nodes', 2, '--wait_timeout', 0], '--wait_timeout must be a positive number of seconds (inf: no limit), got 0'),
    (['--nodes', 2, '--wait_timeout', 'nan'], '--wait_timeout must be a positive number of seconds (inf: no limit), got nan'),
    (['--nodes', 2, '--wait_poll', 'nan'], '--wait_poll must be a positive number of seconds, at most a day (86400), got nan'),
    (['--nodes', 2, '--wait_poll', 'inf'], '--wait_poll must be a positive number of seconds, at most a day (86400), got inf'),
    (['--worker', '--node', 3, '--nodes', 2], '--node 3 with --nodes 2'),
])
def test_bad_machine_numbers_get_one_line_before_anything_starts(tmp_path, flags, says):
    assert says in error_line(cli('sweep', *flags, '--output_dir', tmp_path/'s'), 'sweep')
    assert not (tmp_path/'s').exists()

def test_the_machine_flags_are_hidden_and_a_machine_gets_every_nth_cell():
    from distill_sbs.grid import Sweep
    from distill_sbs.sweep import cell_share
    res = ok(cli('sweep', '--help'))
    assert '--node' not in res.stdout and '--wait_' not in res.stdout and '--workers' in res.stdout
    cells = Sweep(['standard', 'distilled'], fractions=(0.5, 1), seeds=(0, 1, 2), output_dir='s').cells()
    assert [c.name for c in cell_share(cells, 1, 2, 1, 2)] == ['tiny/distilled/0.5/seed0', 'tiny/standard/1/seed1', 'tiny/distilled/1/seed2']

def _slow_cells(monkeypatch, sweep, hours:float) -> list:
    "A fake clock for `wait_for_grid`: its sleeps pass no real time, and the grid's cells finish one every `hours`; the clock, in seconds."
    from distill_sbs import sweep as module
    now = [0.0]
    def sleep(s): now[0] += s
    monkeypatch.setattr(module, 'time', types.SimpleNamespace(monotonic=lambda: now[0], sleep=sleep))
    cells = sweep.cells()
    monkeypatch.setattr(module, 'cell_done', lambda c: now[0] >= hours * 3600 * (1 + cells.index(c)))
    return now

def test_the_primary_waits_without_limit_unless_given_one(monkeypatch):
    "Cells of 7 hours each: the default wait outlasts them (the job's --timeout_hours bounds it); a --wait_timeout of 6 hours still ends it."
    from distill_sbs.grid import Sweep, SweepError
    from distill_sbs.sweep import WAIT_TIMEOUT, sweep_parser, wait_for_grid
    assert WAIT_TIMEOUT == sweep_parser().parse_args([]).wait_timeout == float('inf')
    s = Sweep(['standard'], fractions=(0.5, 1), seeds=(0, 1), output_dir='s')
    now = _slow_cells(monkeypatch, s, hours=7)
    wait_for_grid(s, poll=600)
    assert 28 * 3600 <= now[0] < 28 * 3600 + 600, now  # all four cells, then no more waiting
    now = _slow_cells(monkeypatch, s, hours=7)
    with pytest.raises(SweepError, match=r'^4 of 4 cells unfinished after 21600 s with none finishing'): wait_for_grid(s, timeout=6 * 3600, poll=600)
    assert now[0] == 6 * 3600
