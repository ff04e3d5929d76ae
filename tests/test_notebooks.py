"Every notebook, run top to bottom by nbdev's own test runner: one pytest test per notebook."
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook  # renamed so pytest does not collect it

from conftest import ROOT

NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb'))

def test_there_are_notebooks(): assert len(NOTEBOOKS) >= 3, NOTEBOOKS

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.name)
def test_notebook(nb):
    cfg = get_config(nb.parent)
    ok, secs = run_notebook(nb, skip_flags=cfg.tst_flags.split(), basepath=cfg.config_path, cell_timeout=cfg.cell_timeout)
    assert ok, f'{nb.name} failed after {secs:.0f}s: the traceback is in the captured stderr above'
