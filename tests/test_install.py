"""The three ways in, as a newcomer meets them: every chapter's Colab cell installs this project (never a bare name that
is not on PyPI) with extras that provide every module the chapter imports, as the built wheel's own metadata declares
them; and that wheel, not the checkout, in one fresh virtual environment with every extra (a real install): it imports
what every chapter imports, and runs `data`, `train` and `evaluate` from a folder outside the checkout."""
import ast, functools, importlib.metadata as md, json, os, re, subprocess, sys, venv, zipfile
from pathlib import Path
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
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

NEEDS = {'teacher': {'distill_sbs.backends', 'openai'}, 'serve': {'distill_sbs.serve', 'fastapi', 'uvicorn'}, 'export': {'distill_sbs.export', 'gguf'},
         'deploy': {'distill_sbs.vertex', 'distill_sbs.jobs', 'distill_sbs.grid', 'distill_sbs.sweep', 'distill_sbs.pipeline', 'google.cloud', 'kfp'}}  # what a chapter uses that makes it need the extra

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
                 'serve': ['fastapi', 'uvicorn'], 'export': ['gguf'], 'deploy': ['google.cloud.aiplatform', 'google.cloud.storage', 'kfp']}

@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    if os.environ.get('DIST_WHEEL'): return Path(os.environ['DIST_WHEEL'])  # the release workflow: the wheel it will publish
    out = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '-w', out, ROOT], check=True, capture_output=True)
    (whl,) = out.glob('distill_sbs-*.whl')
    return whl

EXTRAS_SETS = sorted({colab_extras(nb) for nb in NOTEBOOKS})

def wheel_requirements(whl) -> list[Requirement]:
    "The `Requires-Dist` lines of the wheel's own METADATA: what pip installs for it and each extra."
    with zipfile.ZipFile(whl) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith('.dist-info/METADATA'))).decode()
    return [Requirement(l.split(':', 1)[1].strip()) for l in meta.splitlines() if l.startswith('Requires-Dist:')]

@functools.cache
def requirements_of(name:str) -> tuple:
    "The requirements of the installed distribution `name` (none if it is not installed here)."
    try: return tuple(map(Requirement, md.distribution(name).requires or []))
    except md.PackageNotFoundError: return ()

def installed_with(reqs:list[Requirement], extras:tuple) -> set[str]:
    """Every distribution `pip install 'distill-sbs[EXTRAS]'` brings: the wheel's requirements for `extras`, then theirs,
    and so on, read from the metadata of the versions installed here (one not installed here brings only itself)."""
    def wanted(r, ex): return r.marker is None or any(r.marker.evaluate({'extra': e}) for e in (*ex, ''))
    todo, seen = [r for r in reqs if wanted(r, extras)], set()
    while todo:
        r = todo.pop()
        name = canonicalize_name(r.name)
        key = (name, tuple(sorted(r.extras)))
        if key in seen: continue
        seen.add(key)
        todo += [q for q in requirements_of(name) if wanted(q, tuple(r.extras))]
    return {name for name, _ in seen}

@functools.cache
def module_providers() -> dict[str, set[str]]:
    "{importable package or module: the installed distributions whose files hold it}, from every distribution's file list."
    found = {}
    for dist in md.distributions():
        name = canonicalize_name(dist.metadata['Name'])
        for f in dist.files or []:
            parts = f.parts
            if f.suffix not in ('.py', '.so', '.pyd') or not parts or '..' in parts[0] or parts[0].endswith(('.dist-info', '.data')): continue
            mod = parts[:-1] if f.stem == '__init__' else (*parts[:-1], f.name.split('.')[0])
            found.setdefault('.'.join(mod), set()).add(name)
    return found

def owners(mod:str, providers:dict) -> set[str]:
    """The distributions that provide module `mod` (or the nearest package above it that an installed distribution provides);
    for one not installed here, the distribution named after it, as namespace packages are (`google.cloud.storage`: google-cloud-storage)."""
    prefixes = ['.'.join(mod.split('.')[:i]) for i in range(mod.count('.') + 1, 0, -1)]
    return next((providers[p] for p in prefixes if p in providers), None) or {canonicalize_name(p.replace('.', '-')) for p in prefixes[:1]}

def third_party_modules(nb, providers) -> set[str]:
    "The modules a notebook imports from outside the standard library and this project, as precisely as their providers are known."
    mods = set()
    for line in import_lines(nb):
        node = ast.parse(line).body[0]
        if isinstance(node, ast.Import): names = [a.name for a in node.names]
        else: names = [f'{node.module}.{a.name}' if f'{node.module}.{a.name}' in providers or node.module not in providers else node.module
                       for a in node.names]  # `from google.cloud import storage`: a module of a namespace package
        mods |= {m for m in names if m.split('.')[0] not in sys.stdlib_module_names and m.split('.')[0] != 'distill_sbs'}
    return mods

def test_each_chapters_extras_provide_what_it_imports(wheel):
    "The power of one environment per extras set, without the installs: every module a chapter imports (and its extras' own) comes with the extras its Colab cell names."
    reqs, providers = wheel_requirements(wheel), module_providers()
    assert {e for r in reqs if r.marker for e in EXTRAS if r.marker.evaluate({'extra': e})} == EXTRAS, 'the wheel declares every extra'
    for extras in EXTRAS_SETS:
        dists = installed_with(reqs, extras)
        chapters = [nb for nb in NOTEBOOKS if colab_extras(nb) == extras]
        for mod in sorted(set().union(*(third_party_modules(nb, providers) for nb in chapters)) | {m for e in extras for m in EXTRA_MODULES[e]}):
            by = owners(mod, providers)
            assert by & dists, f'{[nb.name for nb in chapters]} import {mod} (from {sorted(by)}), which distill-sbs[{",".join(extras)}] does not install'

def test_the_missing_extra_is_found(wheel):
    "The check above catches a chapter whose Colab cell forgets an extra: chapter 6's imports without `serve`."
    reqs, providers = wheel_requirements(wheel), module_providers()
    dists = installed_with(reqs, ('course',))
    serve = next(nb for nb in NOTEBOOKS if nb.name == '06_serve.ipynb')
    missing = sorted(m for m in third_party_modules(serve, providers) if not owners(m, providers) & dists)
    assert 'fastapi' in missing and 'uvicorn' in missing and 'torch' not in missing, missing

@pytest.mark.slow
def test_the_wheel_with_every_extra_imports_what_every_chapter_imports(wheel, tmp_path):
    "One real environment: PyTorch, then the wheel with every extra a chapter names; every chapter's imports, then the command line, outside the checkout."
    env = tmp_path/'venv'
    venv.create(env, with_pip=True)
    py = env/'bin'/'python'
    pip = lambda *a: subprocess.run([py, '-m', 'pip', 'install', '-q', '--no-compile', '--disable-pip-version-check', *a],
                                    capture_output=True, text=True, timeout=900)
    cpu = ['--index-url', os.environ['TORCH_INDEX_URL']] if os.environ.get('TORCH_INDEX_URL') else []  # as .ci/run installs it
    every = sorted({e for extras in EXTRAS_SETS for e in extras})
    for args in (('torch==2.13.0', *cpu), (f'{wheel}[{",".join(every)}]',)):
        step = pip(*args)
        assert step.returncode == 0, step.stderr[-2000:]
    lines = sorted({l for nb in NOTEBOOKS for l in import_lines(nb)} | {f'import {m}' for e in every for m in EXTRA_MODULES[e]})
    res = subprocess.run([py, '-c', '\n'.join(lines)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f'distill-sbs[{",".join(every)}]: {res.stderr[-1500:]}'
    where = subprocess.run([py, '-c', 'import distill_sbs; print(distill_sbs.__file__)'], cwd=tmp_path, capture_output=True, text=True)
    assert where.returncode == 0 and where.stdout.startswith(str(env)), f'the wheel, not the checkout: {where.stdout}{where.stderr}'
    cli = lambda *a: subprocess.run([env/'bin'/'distill-sbs', *map(str, a)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    for args in [('data', '--n_train', 200, '--n_test', 20, '--output_dir', 'data'),
                 ('train', '--max_steps', 4, '--eval_steps', 4, '--n_train', 200, '--n_test', 20, '--batch_size', 8, '--output_dir', 'run'),
                 ('evaluate', 'run', '--output_dir', 'eval')]:
        res = cli(*args)
        assert res.returncode == 0, f'distill-sbs {args[0]} from the wheel: {res.stderr[-1500:]}'
    assert (tmp_path/'data'/'train.jsonl').exists() and (tmp_path/'run'/'train_config.json').exists() and any((tmp_path/'eval').iterdir())
