"""Every notebook, run top to bottom by nbdev's own test runner: one pytest test per notebook. On a CPU each chapter
runs at the smallest settings that still take every step; what only a long run shows is a benchmark's (test_claims.py)."""
import atexit
import nbdev.test, pytest
from execnb.shell import CaptureShell
from IPython.core.interactiveshell import InteractiveShell
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook  # renamed so pytest does not collect it

from conftest import ROOT

NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb'))
SLOW = {'05a_experiment', '05b_kd_experiment', '05c_cot_experiment', '06_serve', '08_sweep'}  # over about 10 s: left out of the quick loop

def test_there_are_notebooks(): assert len(NOTEBOOKS) >= 3, NOTEBOOKS

def close(shells):
    """End a chapter's IPython shells now, not at exit. Each holds its chapter's namespace (models, datasets) until its
    atexit hook clears it with a `gc.collect()`: left to the end, a worker that ran the chapters spent over 10 s in those
    hooks, and pytest-xdist kills a worker that takes longer than 10 s to exit (coverage.py lost that worker's data)."""
    for shell in shells:
        atexit.unregister(shell.atexit_operations)
        shell.atexit_operations()
        shell.close()
    InteractiveShell.clear_instance()

@pytest.mark.parametrize('nb', [pytest.param(nb, marks=pytest.mark.slow) if nb.stem in SLOW else nb for nb in NOTEBOOKS], ids=lambda p: p.name)
def test_notebook(nb, monkeypatch):
    cfg, shells = get_config(nb.parent), []
    def shell(*args, **kwargs):
        shells.append(CaptureShell(*args, **kwargs))
        return shells[-1]
    monkeypatch.setattr(nbdev.test, 'CaptureShell', shell)  # the shell nbdev runs the chapter in, to close it after
    try: ok, secs = run_notebook(nb, skip_flags=cfg.tst_flags.split(), basepath=cfg.config_path, cell_timeout=cfg.cell_timeout)
    finally: close(shells)
    assert ok, f'{nb.name} failed after {secs:.0f}s: the traceback is in the captured stderr above'
    assert len(shells) == 1, f'{nb.name} ran in {len(shells)} shells; each was closed, but this test expects one'
