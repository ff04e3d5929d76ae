"""`distill-sbs sweep` through the command line: killed with SIGKILL mid-cell and rerun, it finishes with every cell trained
once (its log and run folders show it) and the figure redrawn from the folders is the one it wrote; several workers
started by torchrun share the cells; bad grids get one line before anything starts. (A Vertex AI job's requests are in
test_vertex.py, a sweep over several machines in test_sweep_nodes.py, the compiled pipeline in test_pipeline.py.)"""
import json, signal, subprocess, time
import pytest, yaml
from conftest import cli, error_line, ok, refused

TINY = ['--n_train', 200, '--n_test', 20, '--batch_size', 8, '--no_log', 'true']  # a sweep's --no_log takes a value, like a grid file's

def _events(out):
    "The sweep's events: one machine, one log."
    from distill_sbs.sweep import sweep_events
    assert [f.name for f in out.glob('sweep_log*')] == ['sweep_log.jsonl']
    return sweep_events(out)

@pytest.mark.slow
def test_sigkill_mid_cell_then_rerun_trains_every_cell_once(tmp_path):
    out = tmp_path/'sweep'
    args = ['sweep', '--methods', 'standard', '--fractions', '0.5,1', '--seeds', '0,1', '--max_steps', 30, '--eval_steps', 10, *TINY,
            '--output_dir', out]
    proc = subprocess.Popen(['distill-sbs', *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    third = out/'tiny'/'standard'/'1'/'seed0'  # the cells run by fraction, then seed: this is the third
    deadline = time.time() + 300
    while not list(third.glob('checkpoint-*/trainer_state.json')) and proc.poll() is None and time.time() < deadline: time.sleep(0.05)
    proc.send_signal(signal.SIGKILL); proc.wait(30)
    before = _events(out)
    assert [e['event'] for e in before].count('finish') == 2, before
    assert not (third/'run.json').exists(), 'the kill should land inside the third cell'
    ok(cli(*args))
    after = _events(out)[len(before):]
    test_cells = {e['cell'] for e in before + after}
    assert len(test_cells) == 4
    finished = [e['cell'] for e in before + after if e['event'] == 'finish']
    assert sorted(finished) == sorted(test_cells), 'every cell finished exactly once'
    assert [e['event'] for e in after] == ['skip', 'skip', 'resume', 'finish', 'start', 'finish']
    rec = json.loads((third/'run.json').read_text())
    assert rec['resumed_from'].startswith('checkpoint-') and rec['steps'] == 30
    png = (out/'sweep.png').read_bytes()
    table = (out/'sweep.csv').read_text()
    (out/'sweep.png').unlink()
    res = ok(cli('sweep', '--report', out))
    assert (out/'sweep.png').read_bytes() == png and (out/'sweep.csv').read_text() == table
    assert 'standard' in res.stdout and len(table.splitlines()) == 1 + 2

@pytest.mark.slow
def test_two_workers_under_torchrun_share_the_cells(tmp_path):
    out = tmp_path/'sweep'
    ok(cli('sweep', '--methods', 'standard', '--fractions', '0.5,1', '--seeds', '0,1', '--max_steps', 4, '--eval_steps', 4, *TINY,
           '--workers', 2, '--output_dir', out))
    events = _events(out)
    by_worker = {w: sorted(e['cell'] for e in events if e['event'] == 'finish' and e['worker'] == w) for w in (0, 1)}
    assert len(by_worker[0]) == len(by_worker[1]) == 2, by_worker
    assert set(by_worker[0]).isdisjoint(by_worker[1])
    assert (out/'sweep.png').exists() and len((out/'sweep.csv').read_text().splitlines()) == 1 + 2

@pytest.mark.parametrize('flags, says', [
    (['--fractions', '0.5,1.5'], '--fractions 1.5: a fraction of the training set must be in (0, 1]'),
    (['--fractions', '0'], '--fractions 0.0: a fraction of the training set must be in (0, 1]'),
    (['--seeds', ','], '--seeds is empty: a sweep needs at least one value on every axis'),
    (['--methods', 'standard,distiled'], "did you mean 'distilled'"),
    (['--fractions', 'half'], "--fractions 'half': expected comma-separated float values"),
    (['--lrr', '1e-3'], "unknown setting '--lrr'"),
    (['--lr', '-1'], 'tiny/standard/0.125/seed0: --lr must be positive, got -1.0'),
    (['--subsample', '0.5'], "'subsample' is set by the grid (--fractions)"),
])
def test_a_bad_grid_gets_one_line_before_anything_starts(tmp_path, flags, says):
    assert says in error_line(cli('sweep', *flags, '--output_dir', tmp_path/'s'), 'sweep')
    assert not (tmp_path/'s').exists()

def test_a_grid_file_with_methods_of_its_own(tmp_path):
    from distill_sbs.grid import load_grid
    (tmp_path/'g.yaml').write_text(yaml.safe_dump(dict(methods={'distilled_a3': {'model_type': 'task_prefix', 'alpha': 0.3}}, fractions=[0.5],
                                                      seeds=[0, 1], max_steps=7, output_dir=str(tmp_path/'s'))))
    s = load_grid(tmp_path/'g.yaml')
    cfgs = [s.config(c) for c in s.cells()]
    assert [(c.alpha, c.model_type, c.subsample, c.run, c.max_steps) for c in cfgs] == [(0.3, 'task_prefix', 0.5, 0, 7), (0.3, 'task_prefix', 0.5, 1, 7)]
    assert cfgs[0].output_dir == str(tmp_path/'s'/'tiny'/'distilled_a3'/'0.5'/'seed0')
    (tmp_path/'bad.yaml').write_text(yaml.safe_dump(dict(methods={'m': {'model_typ': 'standard'}})))
    refused(cli('sweep', '--grid', tmp_path/'bad.yaml'), "bad.yaml: method 'm': unknown setting 'model_typ'", 'sweep')

JOB = ['--submit', '--project', 'my-project', '--image', 'us-docker.pkg.dev/my-project/distill-sbs/train:1', '--dry_run']

# ---- grid files are typed: every axis a list of its type, or one line naming the file and the key

@pytest.mark.parametrize('text, says', [
    ('fractions:', 'g.yaml: fractions is empty'),
    ('seeds: []', 'g.yaml: seeds is empty'),
    ('methods:', 'g.yaml: methods is empty'),
    ('seeds: [0.5]', 'g.yaml: seeds: expected a list of integers'),
    ('seeds: [1.0]', 'g.yaml: seeds: expected a list of integers'),
    ('seeds: [true]', 'g.yaml: seeds: expected a list of integers'),
    ('seeds: [-1]', 'g.yaml: seeds -1: a seed must be from 0 to 2**32-1'),
    ('seeds: "a,b"', "g.yaml: seeds 'a,b': expected comma-separated integers"),
    ('fractions: [half]', "g.yaml: fractions: expected a list of numbers in (0, 1], got 'half'"),
    ('fractions: [1.5]', 'g.yaml: fractions 1.5: a fraction of the training set must be in (0, 1]'),
    ('fractions: {a: 1}', 'g.yaml: fractions: expected a list of numbers'),
    ('fractions: [[0.5]]', 'g.yaml: fractions: expected a list of numbers'),
    ('students: 5', 'g.yaml: students: expected a list of strings'),
    ('students: [tiny, 3]', 'g.yaml: students: expected a list of strings'),
    ('methods: 3', 'g.yaml: methods: expected method names'),
    ('methods: [standard, 1]', 'g.yaml: methods: expected method names'),
    ('methods: [standard, distiled]', "g.yaml: invalid choice: --methods 'distiled'"),
    ('methods: {m: standard}', "g.yaml: method 'm': expected a mapping of train settings"),
    ('output_dir:', 'g.yaml: output_dir: expected a folder (a string), got None'),
    ('output_dir: 3', 'g.yaml: output_dir: expected a folder (a string), got 3'),
    ('seeds: [0, 0]', 'g.yaml: seeds repeats 0'),
])
def test_a_damaged_grid_file_gets_one_line_naming_the_file_and_the_key(tmp_path, text, says):
    from distill_sbs.grid import SweepError, load_grid
    (tmp_path/'g.yaml').write_text(text + '\n')
    with pytest.raises(SweepError) as e: load_grid(tmp_path/'g.yaml')
    assert says in str(e.value) and '\n' not in str(e.value)
    refused(cli('sweep', '--grid', tmp_path/'g.yaml', '--output_dir', tmp_path/'s'), says, 'sweep')
    assert not (tmp_path/'s').exists()

@pytest.mark.parametrize('text, axis, value, says', [
    ('seeds: 0', 'seeds', (0,), 'g.yaml: seeds 0 read as [0]'),
    ('fractions: 0.5', 'fractions', (0.5,), 'g.yaml: fractions 0.5 read as [0.5]'),
    ('fractions: 1', 'fractions', (1.0,), 'g.yaml: fractions 1 read as [1.0]'),
    ('fractions: "0.5,1"', 'fractions', (0.5, 1.0), "g.yaml: fractions '0.5,1' read as [0.5, 1.0]"),
    ('seeds: "0, 3"', 'seeds', (0, 3), "g.yaml: seeds '0, 3' read as [0, 3]"),
    ('students: google/flan-t5-small', 'students', ('google/flan-t5-small',), "read as ['google/flan-t5-small']"),
    ('methods: standard', 'methods', {'standard': {'model_type': 'standard'}}, "g.yaml: methods 'standard' read as ['standard']"),
])
def test_a_single_value_is_a_one_item_list_and_a_line_says_so(tmp_path, text, axis, value, says):
    from distill_sbs.grid import load_grid
    (tmp_path/'g.yaml').write_text(text + '\n')
    said = []
    assert getattr(load_grid(tmp_path/'g.yaml', say=said.append), axis) == value
    assert len(said) == 1 and says in said[0]
    res = ok(cli('sweep', '--grid', tmp_path/'g.yaml', '--output_dir', 'gs://b/s', *JOB))  # checked here, then only printed
    assert says in res.stdout

def _grid_value(axis):
    "Damaged or whole values for one axis of a grid file."
    from hypothesis import strategies as st
    from conftest import json_values
    good = dict(fractions=st.floats(0.01, 1), seeds=st.integers(0, 5), students=st.sampled_from(['tiny', 'google/flan-t5-small', 'x/tiny2']),
                methods=st.sampled_from(['standard', 'distilled', 'cot']), output_dir=st.sampled_from(['runs/s', '']))[axis]
    scalar = st.none() | st.booleans() | st.integers(-3, 2**33) | st.floats() | st.text(max_size=8) | good
    joined = st.lists(good, max_size=3).map(lambda v: ','.join(map(str, v)))
    kids = st.lists(scalar | st.lists(scalar, max_size=2), max_size=3)
    methods = st.dictionaries(st.text(max_size=6) | st.integers() | st.sampled_from(['m', 'kd']),
                              st.none() | st.dictionaries(st.sampled_from(['model_type', 'alpha', 'lrr', '1']), json_values, max_size=2), max_size=2)
    return scalar | joined | kids | st.lists(good, max_size=3) | json_values | (methods if axis == 'methods' else st.nothing())

def test_any_damaged_grid_file_is_a_sweep_or_one_line(tmp_path):
    "Generated grid files, each axis damaged its own way: `load_grid` returns a well-typed `Sweep` or raises a one-line `UserError`, nothing else."
    from hypothesis import given, strategies as st
    from conftest import fuzz
    from distill_sbs.core import UserError
    from distill_sbs.grid import Sweep, load_grid
    keys = ('methods', 'fractions', 'students', 'seeds', 'output_dir')
    path, seen = tmp_path/'g.yaml', {'ok': 0, 'refused': 0}

    @fuzz(300)
    @given(st.fixed_dictionaries({}, optional={k: _grid_value(k) for k in keys}))
    def check(grid):
        path.write_text(yaml.safe_dump(grid))
        try: s = load_grid(path, say=lambda line: None)
        except UserError as e:
            seen['refused'] += 1
            assert str(e) and '\n' not in str(e) and str(path) in str(e), str(e)
            return
        seen['ok'] += 1
        assert isinstance(s, Sweep) and s.fractions and s.seeds and s.students and s.methods
        assert all(type(f) is float and 0 < f <= 1 for f in s.fractions)
        assert all(type(v) is int and 0 <= v < 2**32 for v in s.seeds)
        assert all(isinstance(v, str) and v.strip() for v in s.students)
        assert all(isinstance(m, str) and isinstance(f, dict) for m, f in s.methods.items())
        assert isinstance(s.output_dir, str) and s.output_dir
    check()
    assert seen['ok'] > 10 and seen['refused'] > 100, seen

@pytest.mark.parametrize('text', ['seeds: 0.5', 'fractions: [0.5, null]', 'methods: {1: {}}', 'students: {a: b}', '3: 4'])
def test_damaged_grid_files_through_the_command_line(tmp_path, text):
    (tmp_path/'g.yaml').write_text(text + '\n')
    refused(cli('sweep', '--grid', tmp_path/'g.yaml', '--output_dir', tmp_path/'s'), str(tmp_path/'g.yaml'), 'sweep')

def test_sweep_help_shows_the_job_flags_and_the_defaults():
    res = ok(cli('sweep', '--help'))
    for flag in ('--submit', '--project', '--image', '--machine_type', '--replica_count', '--dry_run', '--fractions', '--grid'):
        assert flag in res.stdout, flag
    assert '0.125,0.25,0.5,1' in res.stdout
    refused(cli('sweep', '--project', 'p', '--output_dir', 'gs://b/s'), '--project is a flag of a Vertex AI job: add --submit', 'sweep')

def test_the_size_panel_and_table_read_plainly_for_students_of_nearly_one_size():
    "Two students 0.1% apart in size (tiny vocabularies): a linear axis with labels told apart, and the printed table keeps the student column."
    import pandas as pd, matplotlib
    matplotlib.use('Agg')
    from distill_sbs.sweep import _printable, plot_sweep
    t = pd.DataFrame(dict(method=['standard', 'distilled'] * 2, student=['a', 'a', 'b', 'b'], fraction=[1.0] * 4, params=[1_400_000] * 2 + [1_401_500] * 2,
                          accuracy=[.4, .5, .45, .55], interval=[.02] * 4, teacher=[.8] * 4, majority=[.17] * 4, seeds=[3] * 4))
    bx = plot_sweep(t).axes[1]
    assert bx.get_xscale() == 'linear' and [x.get_text() for x in bx.get_xticklabels()] == ['1,400,000', '1,401,500']
    assert plot_sweep(t.assign(params=[1_400_000] * 2 + [77_000_000] * 2)).axes[1].get_xscale() == 'log'
    assert 'student' in _printable(t).splitlines()[0] and 'student' not in _printable(t[t.student == 'a']).splitlines()[0]

def test_the_events_of_every_machine_are_read_in_time_order(tmp_path):
    "Each machine's log, read together in time order; one process's events keep their order; a line cut short by a kill is left out."
    from distill_sbs.sweep import events_file, sweep_events
    assert (events_file(), events_file(0, 2), events_file(3, 4)) == ('sweep_log.jsonl', 'sweep_log.node0.jsonl', 'sweep_log.node3.jsonl')
    lines = {events_file(0, 2): [(1.0, 'start'), (5.0, 'finish'), (5.0, 'skip')], events_file(1, 2): [(2.0, 'start'), (3.0, 'finish')]}
    for name, events in lines.items():
        (tmp_path/name).write_text(''.join(json.dumps(dict(time=t, event=e, node=name[-7])) + '\n' for t, e in events) + '{"time": 6.0, "ev')
    (tmp_path/'sweep.json').write_text('{}')  # not a log
    assert [(e['time'], e['event']) for e in sweep_events(tmp_path)] == [(1.0, 'start'), (2.0, 'start'), (3.0, 'finish'), (5.0, 'finish'), (5.0, 'skip')]
    assert sweep_events(tmp_path/'none') == []

def _job_args(res) -> list[str]:
    "The container args of the one job a dry run would send."
    (line,) = [l for l in res.stdout.splitlines() if l.startswith('would send CreateCustomJobRequest ')]
    return json.loads(line.split(' ', 3)[3])['customJob']['jobSpec']['workerPoolSpecs'][0]['containerSpec']['args']

def test_submit_forwards_the_sweep_flags_its_machines_use():
    "What the machines of a job run: the sweep's own flags when given, not their defaults, each read back as given."
    from distill_sbs.sweep import sweep_parser
    submit = lambda *flags: _job_args(ok(cli('sweep', '--fractions', 1, '--seeds', 0, '--output_dir', 'gs://b/s', *flags, *JOB)))
    grid = ['sweep', '--grid', '/gcs/b/s/sweep.yaml']
    assert submit() == grid
    assert submit('--batch_size_eval', 64, '--wait_timeout', 'inf', '--wait_poll', 5) == grid  # the defaults: nothing to forward
    flags = ['--workers', '2', '--batch_size_eval', '16', '--wait_timeout', '1234567.5', '--wait_poll', '0.25']
    args = submit(*flags)
    assert args == [*grid, *flags[:5], '1234567.5', '--wait_poll', '0.25'], args
    a = sweep_parser().parse_args(args[1:])  # as a machine reads them
    assert (a.workers, a.batch_size_eval, a.wait_timeout, a.wait_poll) == (2, 16, 1234567.5, 0.25)

@pytest.mark.parametrize('flags, says', [
    (['--batch_size_eval', 0], '--batch_size_eval must be at least 1, got 0'),
    (['--workers', 0], '--workers must be at least 1, got 0'),
    (['--wait_poll', 'inf'], '--wait_poll must be a positive number of seconds, at most a day (86400), got inf'),
    (['--nodes', 2], '--node and --nodes are given to each machine by the job: set the machines with --replica_count'),
])
def test_submit_refuses_sweep_flags_no_machine_could_use(flags, says):
    res = cli('sweep', '--output_dir', 'gs://b/s', *map(str, flags), *JOB)
    refused(res, says, 'sweep')
    assert 'would send' not in res.stdout and 'would upload' not in res.stdout

def test_submit_checks_every_cell_for_local_paths(tmp_path):
    "A student on this machine that is not the grid's first: refused in one line naming it, nothing sent."
    folder = tmp_path/'my-student'
    folder.mkdir()
    res = cli('sweep', '--students', f'tiny,{folder}', '--fractions', 1, '--seeds', 0, '--output_dir', 'gs://b/s', *JOB)
    refused(res, f'--from_pretrained {folder}: a local path the job cannot read', 'sweep')
    assert 'would send' not in res.stdout and 'would upload' not in res.stdout
