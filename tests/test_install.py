"""The three ways in, as a newcomer meets them: every chapter's Colab cell installs this project (never a bare name that
is not on PyPI), and the built wheel, not the checkout, works in fresh virtual environments with only the extras a
chapter's Colab cell names: it imports what those chapters import, and runs `data`, `train` and `evaluate` from a
folder outside the checkout. Real installs: one environment per extras set."""
import ast, json, os, re, subprocess, sys, venv
from pathlib import Path
import pytest
from conftest import ROOT

PYPROJECT = (ROOT/'pyproject.toml').read_text()  # read as text: tomllib is Python 3.11+, the project runs on 3.10
REPO = re.search(r'^Repository = "(.+)"', PYPROJECT, re.M)[1]
EXTRAS = set(re.findall(r'^(\w+) = \[', PYPROJECT.split('[project.optional-dependencies]')[1].split('\n[')[0], re.M))
VERSION = re.search(r'__version__ = "(.+)"', (ROOT/'distill_sbs'/'__init__.py').read_text())[1]
NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb'))

def code_cells(nb):
    return [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']

def colab_extras(nb) -> tuple:
    "The extras a notebook's first code cell installs, checking that it installs this project from its repository or a release."
    first = code_cells(nb)[0]
    m = re.fullmatch(r'#\| colab\n!pip install -q "distill-sbs\[([\w,]+)\](?: @ git\+(\S+?)|==(\S+))"', first)
    assert m, f'{nb.name}: the first code cell must install this project: {first!r}'
    extras, url, version = m[1].split(','), m[2], m[3]
    assert url == REPO or version == VERSION, f'{nb.name}: installs from {url or version}, not {REPO} or {VERSION}'
    unknown = set(extras) - EXTRAS
    assert not unknown, f'{nb.name}: no such extras {unknown}'
    return tuple(sorted(extras))

def test_every_colab_cell_installs_this_project():
    assert {colab_extras(nb) for nb in NOTEBOOKS} >= {('course',)}

NEEDS = {'teacher': {'distill_sbs.backends'}, 'serve': {'distill_sbs.serve', 'fastapi', 'uvicorn'},
         'deploy': {'distill_sbs.deploy', 'distill_sbs.sweep', 'google.cloud', 'kfp'}}  # what a chapter uses that makes it need the extra

def test_each_chapter_installs_exactly_the_extras_it_needs():
    for nb in NOTEBOOKS:
        mods = set(imported_modules([nb]))
        assert set(colab_extras(nb)) == {'course'} | {extra for extra, uses in NEEDS.items() if uses & mods}, (nb.name, sorted(mods))

def test_every_badge_opens_its_own_chapter():
    owner_repo = REPO.removeprefix('https://github.com/')
    for nb in NOTEBOOKS:
        links = re.findall(r'https://colab\.research\.google\.com/github/[^)\s"]+', nb.read_text())
        assert links == [f'https://colab.research.google.com/github/{owner_repo}/blob/main/nbs/{nb.name}'], (nb.name, links)

def import_lines(nb) -> list:
    "Every import statement of a notebook's code, at any depth, outside the cells skipped in CI (installs, cloud credentials)."
    lines = []
    for cell in code_cells(nb):
        if cell.startswith('#| colab') or '#| cloud' in cell: continue
        lines += [f'import distill_sbs.{m}' for m in re.findall(r'^#\| default_exp (\w+)', cell, re.M)]  # the module it exports
        tree = ast.parse('\n'.join(l for l in cell.splitlines() if not l.lstrip().startswith(('!', '%'))))
        lines += [ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Import) or (isinstance(n, ast.ImportFrom) and not n.level)]
    return sorted(set(l for l in lines if not l.startswith('from __future__')))

def imported_modules(nbs) -> list:
    "The modules the notebooks' import statements name."
    mods = set()
    for nb in nbs:
        for line in import_lines(nb):
            node = ast.parse(line).body[0]
            mods |= {a.name for a in node.names} if isinstance(node, ast.Import) else {node.module}
    return sorted(mods)

# what each extra is for, imported in its environment too (the library imports them lazily, inside the code that uses them)
EXTRA_MODULES = {'course': ['nbdev', 'fastcore.test', 'httpx2'], 'teacher': ['openai', 'google.genai', 'httpx2'],
                 'serve': ['fastapi', 'uvicorn'], 'deploy': ['google.cloud.aiplatform', 'google.cloud.storage', 'kfp']}

@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    if os.environ.get('DIST_WHEEL'): return Path(os.environ['DIST_WHEEL'])  # the release workflow: the wheel it will publish
    out = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '-w', out, ROOT], check=True, capture_output=True)
    (whl,) = out.glob('distill_sbs-*.whl')
    return whl

EXTRAS_SETS = sorted({colab_extras(nb) for nb in NOTEBOOKS})

@pytest.mark.parametrize('extras', EXTRAS_SETS, ids=','.join)
def test_the_wheel_with_a_chapters_extras_imports_what_it_imports(wheel, tmp_path, extras):
    env = tmp_path/'venv'
    venv.create(env, with_pip=True)
    py = env/'bin'/'python'
    pip = lambda *a: subprocess.run([py, '-m', 'pip', 'install', '-q', *a], capture_output=True, text=True, timeout=900)
    cpu = ['--index-url', os.environ['TORCH_INDEX_URL']] if os.environ.get('TORCH_INDEX_URL') else []  # as .ci/run installs it
    for args in (('torch==2.13.0', *cpu), (f'{wheel}[{",".join(extras)}]',)):
        step = pip(*args)
        assert step.returncode == 0, step.stderr[-2000:]
    chapters = [nb for nb in NOTEBOOKS if colab_extras(nb) == extras]
    lines = sorted({l for nb in chapters for l in import_lines(nb)} | {f'import {m}' for e in extras for m in EXTRA_MODULES[e]})
    res = subprocess.run([py, '-c', '\n'.join(lines)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f'{[nb.name for nb in chapters]} with [{",".join(extras)}]: {res.stderr[-1500:]}'
    where = subprocess.run([py, '-c', 'import distill_sbs; print(distill_sbs.__file__)'], cwd=tmp_path, capture_output=True, text=True)
    assert where.returncode == 0 and where.stdout.startswith(str(env)), f'the wheel, not the checkout: {where.stdout}{where.stderr}'
    if extras != ('course',): return
    cli = lambda *a: subprocess.run([env/'bin'/'distill-sbs', *map(str, a)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    for args in [('data', '--n_train', 200, '--n_test', 20, '--output_dir', 'data'),
                 ('train', '--max_steps', 4, '--eval_steps', 4, '--n_train', 200, '--n_test', 20, '--batch_size', 8, '--output_dir', 'run'),
                 ('evaluate', 'run', '--output_dir', 'eval')]:
        res = cli(*args)
        assert res.returncode == 0, f'distill-sbs {args[0]} from the wheel: {res.stderr[-1500:]}'
    assert (tmp_path/'data'/'train.jsonl').exists() and (tmp_path/'run'/'train_config.json').exists() and any((tmp_path/'eval').iterdir())
