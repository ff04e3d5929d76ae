"The project's contract: the README's commands, its sync with index.ipynb, and CI running exactly them."
import json, re, subprocess, sys
import pytest
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from conftest import ROOT, cli, run_cli

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

@pytest.mark.slow
def test_main_command_runs_offline(tmp_path):
    "The README's main job on a fresh folder, offline: report, chart, JSON and predictions, all telling the same story."
    main = _sh_blocks()[1].split()
    assert main[0] == 'distill-sbs'
    res = run_cli(*main[1:], cwd=tmp_path, env={'HF_HUB_OFFLINE': '1', 'HF_DATASETS_OFFLINE': '1'}, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path/main[main.index('--output_dir') + 1]
    assert (out/'data'/'train.jsonl').exists() and 'teacher acc' in res.stdout
    results = json.loads((out/'results.json').read_text())
    report = (out/'report.md').read_text()
    systems = results['systems']
    assert set(systems) == {'teacher', 'base', 'distilled', 'standard', 'majority'}
    for s in systems.values():  # the report's numbers are the JSON's
        assert f"| {s['label']} | {s['accuracy']:.1%} | {s['correct']:,} / {s['n']:,} |" in report, s['label']
        assert s['n'] == results['n_test'] == 500
    preds = [json.loads(l) for l in (out/'predictions.jsonl').read_text().splitlines()]
    assert len(preds) == results['n_test']
    for name, s in systems.items():  # and the JSON's are the per-example predictions'
        assert sum(p['correct'][name] for p in preds) == s['correct'], name
    for name in ('distilled', 'standard'):
        assert results['runs'][name]['steps'] == 500
    # the README's headline, on this seed: ahead in all ten runs of benchmarks/main_job.py (five seeds, both CPU paths)
    assert systems['distilled']['accuracy'] > systems['standard']['accuracy'] > systems['majority']['accuracy'], systems
    img = plt.imread(out/'accuracy.png')  # a real chart: a sensible size, and not blank
    assert img.shape[0] > 300 and img.shape[1] > 500 and img[..., :3].std() > 0.05
    assert '![test accuracy](accuracy.png)' in report

def test_layout():
    for p in ['nbs/index.ipynb', 'nbs/_quarto.yml', 'nbs/00e_data.ipynb', 'distill_sbs/data.py', 'pyproject.toml',
              'setup.py', 'LICENSE', 'README.md', '.ci/run']:
        assert (ROOT/p).exists(), p
    assert 'Apache License' in (ROOT/'LICENSE').read_text()
    assert not (ROOT/'settings.ini').exists()  # nbdev 3 refuses it: the config is pyproject.toml's [tool.nbdev]

def test_course_order_is_dependency_order():
    "A chapter uses only earlier chapters: every `distill_sbs` import in a notebook (its module's and its demos') is of an earlier one."
    import json
    notebooks = sorted(p for p in (ROOT/'nbs').glob('[0-9]*.ipynb'))
    module_of = {}
    for nb in notebooks:
        src = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')
        module_of[nb.name] = re.search(r'#\|\s*default_exp\s+(\S+)', src).group(1)
    place = {m: i for i, m in enumerate(module_of.values())}
    for nb in notebooks:
        src = '\n'.join(''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code')
        used = set(re.findall(r'from distill_sbs\.(\w+) import', src)) | set(re.findall(r'import distill_sbs\.(\w+)', src))
        own = module_of[nb.name]
        later = sorted(m for m in used if m != own and place[m] > place[own])
        assert not later, f'{nb.name} imports {later}, which later chapters teach'
    assert len(set(module_of.values())) == len(module_of), 'one notebook per module'

def test_the_house_keeps_its_shape():
    "`tools/layout.py --check`: no module over 500 lines, no import circle or import against the course order, and most export cells short."
    res = subprocess.run([sys.executable, str(ROOT/'tools'/'layout.py'), '--check'], capture_output=True, text=True)
    assert res.returncode == 0 and 'PROBLEM' not in res.stdout, res.stdout[-3000:] + res.stderr[-2000:]
    assert len([l for l in res.stdout.splitlines() if l.split()[:1] and l.split()[0].endswith('experiment')]) >= 3  # the check saw them

def test_no_module_changes_another_when_imported():
    "Importing a chapter never edits an earlier chapter's tables (what `evaluate` prints must not depend on what happened to be imported)."
    code = r'''
import importlib, json, pathlib, re
mods = [re.search(r"default_exp\s+(\w+)", p.read_text()).group(1) for p in sorted(pathlib.Path("nbs").glob("[0-9]*.ipynb"))]
def tables(m):
    return {k: repr(v) for k, v in vars(m).items() if isinstance(v, (dict, list, set)) and not k.startswith("__")}
seen, changed = {}, []
for name in mods:
    m = importlib.import_module(f"distill_sbs.{name}")
    for old, snap in seen.items():
        now = tables(importlib.import_module(f"distill_sbs.{old}"))
        changed += [f"importing {name} changed {old}.{k}" for k in snap if now.get(k) != snap[k]]
    seen[name] = tables(m)
print(json.dumps(changed))
'''
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads(res.stdout.strip().splitlines()[-1]) == []

def test_every_subcommand_has_its_own_help_with_the_flags_the_readme_shows():
    "`distill-sbs X --help` names X and lists every flag the README uses with X (no command prints another's help)."
    from distill_sbs.cli import SUBCOMMANDS
    shown = {}
    for block in _sh_blocks() + re.findall(r'`(distill-sbs [^`]+)`', README):
        for line in re.split(r'\n(?!\s)', block.replace('\\\n', ' ')):
            if m := re.search(r'distill-sbs ([a-z-]+)(.*)', line): shown.setdefault(m[1], set()).update(re.findall(r'--[a-z_]+', m[2].split('#')[0]))
    assert set(shown) <= set(SUBCOMMANDS) and len(shown) >= 8, shown
    for command in SUBCOMMANDS:
        res = cli(command, '--help')
        assert res.returncode == 0 and res.stdout.startswith(f'usage: distill-sbs {command} '), (command, res.stdout[:200], res.stderr[-500:])
        missing = [f for f in shown.get(command, ()) if f not in res.stdout]
        assert not missing, (command, missing)
