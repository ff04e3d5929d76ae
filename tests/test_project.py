"The project's contract: the README's commands, its sync with index.ipynb, and CI running exactly them."
import re, subprocess, sys
from conftest import ROOT, run_cli

README = (ROOT/'README.md').read_text()

def _sh_blocks(): return re.findall(r'```sh\n(.*?)\n```', README, re.S)

def test_readme_matches_index_notebook():
    res = subprocess.run([sys.executable, ROOT/'tools'/'readme.py', '--check'], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout

def test_readme_states_the_two_commands_and_ci_runs_them():
    setup_and_test, main = _sh_blocks()[:2]
    assert setup_and_test.endswith('&& pytest') and 'pip install -e ".[dev]"' in setup_and_test
    ci = (ROOT/'.ci'/'run').read_text()
    assert 'torch==2.13.0' in ci and 'README.md' in ci  # CI reads the command from the README itself

def test_main_command_runs_offline(tmp_path):
    main = _sh_blocks()[1].split()
    assert main[0] == 'distill-sbs'
    res = run_cli(*main[1:], cwd=tmp_path, env={'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'})
    assert res.returncode == 0, res.stderr
    assert (tmp_path/'runs'/'data'/'train.jsonl').exists() and 'teacher acc' in res.stdout

def test_layout():
    for p in ['nbs/index.ipynb', 'nbs/_quarto.yml', 'nbs/00_data.ipynb', 'distill_sbs/data.py', 'pyproject.toml',
              'setup.py', 'LICENSE', 'README.md', '.ci/run']:
        assert (ROOT/p).exists(), p
    assert 'Apache License' in (ROOT/'LICENSE').read_text()
    assert not (ROOT/'settings.ini').exists()  # nbdev 3 refuses it: the config is pyproject.toml's [tool.nbdev]
