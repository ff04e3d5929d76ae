"A docs smoke test without Quarto: nbdev's processing step (what `nbdev-proc-nbs` runs before Quarto renders)."
import json, subprocess, sys
import pytest
from conftest import ROOT

@pytest.mark.slow
def test_docs_process(tmp_path):
    # `nbdev-proc-nbs` itself would first try to install Quarto; call its processing step directly.
    res = subprocess.run([sys.executable, '-c', 'from nbdev.serve import proc_nbs; proc_nbs(force=True, n_workers=0)'],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    proc = ROOT/'_proc'
    for nb in (ROOT/'nbs').glob('*.ipynb'): assert (proc/nb.name).exists(), nb.name
    cells = json.loads((proc/'00e_data.ipynb').read_text())['cells']
    assert any('DataSplits' in ''.join(c['source']) and c['cell_type'] == 'markdown' for c in cells)  # show_doc rendered
