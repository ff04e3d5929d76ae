"""What the tests share: the checkout's paths, the two ways to run `distill-sbs` (in this process, or as a real program
where the process is the subject), the checks every command-line test makes, small settings, and the session's
fixtures (SmolLM2 and a Qwen2.5 twin from `../shared`, one trained tiny run of each kind of student)."""
import contextlib, io, os, shutil, subprocess, tempfile
from pathlib import Path
from typing import NamedTuple
import pytest
from hypothesis import HealthCheck, settings, strategies as st

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/'shared'

# Tests are offline whatever the machine can reach: no Hub, in this process and every process it starts.
os.environ.update(HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', TRANSFORMERS_NO_ADVISORY_WARNINGS='1')
# Under pytest-xdist each worker gets its share of the cores as PyTorch threads, and so do the programs it starts: two
# workers on two cores run a thread each, not four threads fighting over two cores.
if os.environ.get('PYTEST_XDIST_WORKER'):
    os.environ.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', 1)))))

@pytest.fixture(autouse=True)
def temp_files_in_tmp_path(tmp_path, monkeypatch):
    """What a test writes with `tempfile` (a chapter's `mkdtemp()` run folders, SmolLM2's checkpoints), in this process or a
    program it starts (`TMPDIR`), lands in the test's own `tmp_path`, which pytest removes when the test passes."""
    monkeypatch.setenv('TMPDIR', str(tmp_path))
    monkeypatch.setattr(tempfile, 'tempdir', str(tmp_path))

# ---- running the command line

class Ran(NamedTuple):
    "What a `distill-sbs` run left: its exit status and what it printed (the fields of a `CompletedProcess`)."
    returncode: int
    stdout: str
    stderr: str

def cli(*args, env:dict|None=None, cwd=None) -> Ran:
    "Run `distill-sbs ARGS` in this process (`cli.main`, what the installed command calls), capturing what it prints."
    from distill_sbs.cli import main
    out, err, saved_env, saved_cwd = io.StringIO(), io.StringIO(), dict(os.environ), os.getcwd()
    os.environ.update({k: str(v) for k, v in (env or {}).items()})
    try:
        if cwd: os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: code = main([str(a) for a in args])
            except SystemExit as e: code = e.code if isinstance(e.code, int) else int(e.code is not None)  # --help
    finally:
        os.chdir(saved_cwd)
        os.environ.clear(); os.environ.update(saved_env)
    return Ran(code, out.getvalue(), err.getvalue())

def run_cli(*args, cwd=None, env=None, timeout=300):
    "Run the installed `distill-sbs` in a real subprocess (where the process is the subject: killed, served, installed)."
    return subprocess.run(['distill-sbs', *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})

def ok(res):
    "A run that succeeded, with what it printed in the failure message if not."
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-3000:])
    return res

def refused(res, says:str, command:str|None=None) -> str:
    "A run refused with exit status 2 and one line (progress bars aside) that says `says`, no traceback; returns the line."
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    lines = [l for l in res.stderr.splitlines() if l.startswith('distill-sbs ')]
    assert len(lines) == 1 and says in lines[0] and 'Traceback' not in res.stderr, res.stderr[-3000:]
    if command: assert lines[0].startswith(f'distill-sbs {command}: error: '), lines[0]
    return lines[0]

def error_line(res, command:str) -> str:
    "A run refused with exit status 2 whose whole stderr is one line, `distill-sbs COMMAND: error: ...`; returns it."
    assert res.returncode == 2, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'distill-sbs {command}: error: ') and 'Traceback' not in res.stderr, res.stderr[-3000:]
    return lines[0]

# Small settings for a command-line run on the built-in task: seconds, not minutes
SMALL = ['--n_train', 200, '--n_test', 20, '--batch_size', 8, '--no_log']

def teach_args(url, out, *extra) -> list:
    "`distill-sbs teach`'s arguments for the loopback stand-in teacher at `url` (chapter 1c), writing to `out`."
    return ['teach', '--model', 'stand-in', '--base_url', url, '--output_dir', out, '--no_progress', *extra]

# ---- generated inputs for the fault tests: any JSON value, and the settings they run under (bounded, the same every run)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=10)

def fuzz(n): return settings(max_examples=n, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))

# ---- fixtures

@pytest.fixture
def shared():
    "The `../shared` folder beside the checkout; tests that need it skip when a fresh clone has none."
    if not (SHARED/'data'/'cqa').is_dir(): pytest.skip(f'needs the development data in {SHARED} (absent in a fresh clone elsewhere)')
    return SHARED

@pytest.fixture(scope='session')
def smollm2():
    "SmolLM2-135M-Instruct from `../shared`, converted once into an ordinary model folder (skips without `../shared`)."
    src = SHARED/'models'/'smollm2-135m-instruct'
    if not (src/'to_hf.py').exists(): pytest.skip(f'needs the real SmolLM2 model in {src} (absent in a fresh clone elsewhere)')
    pytest.importorskip('gguf', reason='converting SmolLM2 needs the gguf package (the dev extra has it)')
    from distill_sbs import data
    return Path(data.smollm2(shared=SHARED))  # offline here: the copy converted once into ~/.cache/distill_sbs, under a file lock

@pytest.fixture(scope='session')
def qwen_twin(tmp_path_factory):
    "A folder with a Qwen2.5-0.5B twin shrunk to 2 layers of width 64 (random weights) and the real Qwen2.5 tokenizer (skips without `../shared`)."
    models = SHARED/'models'
    if not (models/'qwen2.5-tokenizer'/'tokenizer.json').exists(): pytest.skip(f'needs the Qwen2.5 tokenizer in {models} (absent in a fresh clone elsewhere)')
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    cfg = AutoConfig.from_pretrained(models/'qwen2.5-0.5b-config')
    cfg.update(dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    max_window_layers=2, layer_types=['full_attention'] * 2))
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp('qwen-twin')
    AutoModelForCausalLM.from_config(cfg).save_pretrained(d)
    AutoTokenizer.from_pretrained(models/'qwen2.5-tokenizer').save_pretrained(d)
    return d

def built_once(tmp_path_factory, name:str, build) -> Path:
    "The folder `name`, made by `build(folder)` once per test session, however many pytest-xdist workers ask for it."
    from filelock import FileLock
    root = tmp_path_factory.getbasetemp()
    if os.environ.get('PYTEST_XDIST_WORKER'): root = root.parent  # the workers' common folder
    folder, done = root/name, root/f'{name}.done'
    with FileLock(str(root/f'{name}.lock')):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
    return folder

@pytest.fixture(scope='session')
def tiny_run(tmp_path_factory):
    "One finished run of the tiny T5 student (distilling step-by-step, 20 steps, validated at 10 and 20), for the tests that only read a run."
    return built_once(tmp_path_factory, 'tiny-run', lambda d: ok(cli('train', '--max_steps', 20, '--eval_steps', 10, '--output_rationale',
                                                                     '--logging_steps', 5, *SMALL[:-1], '--output_dir', d)))

@pytest.fixture(scope='session')
def causal_run(tmp_path_factory):
    "One finished run of `tiny-causal` (distilling step-by-step, 8 steps, validated at 4 and 8), for the tests that only read a run."
    return built_once(tmp_path_factory, 'causal-run', lambda d: ok(cli('train', '--from_pretrained', 'tiny-causal', '--max_steps', 8, '--eval_steps', 4,
                                                                       '--gen_max_len', 8, '--lr', 3e-3, *SMALL, '--output_dir', d)))
