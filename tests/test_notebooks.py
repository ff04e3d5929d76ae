"""Every notebook, run top to bottom by nbdev's own test runner: one pytest test per notebook. On a CPU each chapter
runs at the smallest settings that still take every step; what only a long run shows is a benchmark's (test_claims.py)."""
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook  # renamed so pytest does not collect it

from conftest import ROOT

NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb'))
SLOW = {'05a_experiment', '05b_kd_experiment', '05c_cot_experiment', '06_serve', '08_sweep'}  # over about 10 s: left out of the quick loop

def test_there_are_notebooks(): assert len(NOTEBOOKS) >= 3, NOTEBOOKS

@pytest.mark.parametrize('nb', [pytest.param(nb, marks=pytest.mark.slow) if nb.stem in SLOW else nb for nb in NOTEBOOKS], ids=lambda p: p.name)
def test_notebook(nb):
    cfg = get_config(nb.parent)
    ok, secs = run_notebook(nb, skip_flags=cfg.tst_flags.split(), basepath=cfg.config_path, cell_timeout=cfg.cell_timeout)
    assert ok, f'{nb.name} failed after {secs:.0f}s: the traceback is in the captured stderr above'
