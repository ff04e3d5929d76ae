"""The project's image (`Dockerfile`) keeps the CUDA of its base: Docker cannot run here, so the tests read the file as
Docker does and check what they can without it. Its steps come in the order that protects the base's torch (constraints
written from it, the install held to them, then a check); that check, run here as the build runs it, fails in one line;
and pip, resolving the image's install against the base's torch from the package index, keeps that torch and the CUDA
libraries of the base's CUDA (the slow test)."""
import ast, importlib.util, json, os, re, ssl, subprocess, sys, urllib.request
from pathlib import Path
import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from conftest import ROOT

DOCKERFILE = ROOT/'Dockerfile'

def instructions(text:str) -> list:
    "The Dockerfile's instructions as (KEYWORD, arguments), as Docker reads them: comment lines out, continued lines joined."
    out, pending = [], ''
    for line in text.splitlines():
        if line.lstrip().startswith('#') or (not line.strip() and not pending): continue
        if line.endswith('\\'): pending += line[:-1]; continue
        line, pending = pending + line, ''
        keyword, _, args = line.strip().partition(' ')
        out.append((keyword.upper(), args.strip()))
    assert not pending, 'the Dockerfile ends inside a continued line'
    return out

STEPS = instructions(DOCKERFILE.read_text())

def step(says:str, keyword:str='RUN') -> tuple:
    "The index and arguments of the one `keyword` instruction whose arguments match the regex `says`."
    found = [(i, args) for i, (k, args) in enumerate(STEPS) if k == keyword and re.search(says, args)]
    assert len(found) == 1, f'Dockerfile: expected one {keyword} matching {says!r}, found {len(found)}'
    return found[0]

def base_image() -> str:
    "The base image's tag, from `ARG PYTORCH_IMAGE=...`."
    return step(r'^PYTORCH_IMAGE=', 'ARG')[1].split('=', 1)[1]

def base_torch() -> tuple:
    "The base's torch version and CUDA major version, read from its tag (`pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime`)."
    m = re.fullmatch(r'pytorch/pytorch:(\d+\.\d+\.\d+)-cuda(\d+)\.\d+-cudnn\d+-runtime', base_image())
    assert m, f'Dockerfile: PYTORCH_IMAGE={base_image()} is not a pytorch/pytorch CUDA runtime tag'
    return m[1], int(m[2])

def constraints_path() -> str:
    "Where the constraints step writes the base's torch stack."
    return re.search(r'pip list --format=freeze .*?> ([^\s;&|]+)', step(r'pip list --format=freeze')[1])[1]

def install_extras() -> str:
    "The extras the Dockerfile installs the project with, e.g. `serve,gcs,teacher,deploy`."
    return re.search(r'"\.\[([\w,]+)\]"', step(r'pip install .*"\.\[')[1])[1]

def test_the_steps_that_keep_the_base_torch_come_in_order():
    (i_arg, _), (i_from, frm) = step(r'^PYTORCH_IMAGE=', 'ARG'), step(r'.', 'FROM')
    assert i_arg < i_from and frm == '${PYTORCH_IMAGE}', 'Dockerfile: FROM must use the PYTORCH_IMAGE argument'
    base_torch()  # a tag the slow test can read
    i_constraints, constraints = step(r'pip list --format=freeze')
    path = constraints_path()
    for name in ('torch', 'triton', 'nvidia-'): assert name in constraints, f'the constraints step leaves out {name}'
    i_install, install = step(r'pip install .*"\.\[')
    assert re.search(rf'(^|\s)-c {re.escape(path)}\s', install), f'the project install must use -c {path}: {install}'
    i_check, check = step(r'is_torch_available\(\)')
    assert path in check and 'torch.version.cuda' in check and 'sys.exit(' in check
    assert i_from < i_constraints < i_install < i_check, 'constraints, then the install, then the check'
    assert not any(k == 'RUN' and 'pip install' in a for k, a in STEPS[i_install+1:]), 'a pip install after the check'

def test_the_base_torch_is_one_the_project_accepts():
    "The project's torch floor is what keeps transformers 5 on (below torch 2.6 it turns PyTorch off without an error)."
    deps = (ROOT/'pyproject.toml').read_text().split('dependencies = [', 1)[1].split(']', 1)[0]
    torch_req = Requirement(re.search(r'"(torch\b[^"]*)"', deps)[1])
    version, _ = base_torch()
    assert torch_req.specifier.contains(version), f'Dockerfile: the base torch {version} is not {torch_req} (pyproject.toml)'

def test_the_image_still_serves_on_vertex_ai():
    assert step(r'.', 'CMD')[1] == '["distill-sbs", "serve", "--host", "0.0.0.0"]'
    assert step(r'.', 'EXPOSE')[1] == '8080'
    assert 'AIP_HTTP_PORT=8080' in step(r'AIP_HTTP_PORT', 'ENV')[1].split()
    assert step(r'.', 'WORKDIR')[1] == '/src'
    assert step(r'distill_sbs', 'COPY')[1] == 'distill_sbs ./distill_sbs'
    assert set(install_extras().split(',')) >= {'serve', 'gcs', 'teacher', 'deploy'}

def test_the_build_context_holds_what_the_image_copies():
    "`.dockerignore` lets in only what the COPY steps name (no runs, checkpoints or credentials in the build context)."
    allowed = {l[1:].rstrip('/') for l in (ROOT/'.dockerignore').read_text().splitlines() if l.startswith('!')}
    copied = {src.removeprefix('./').rstrip('/') for k, args in STEPS if k == 'COPY' for src in args.split()[:-1]}
    assert copied and copied <= allowed, f'.dockerignore leaves out what the Dockerfile copies: {sorted(copied - allowed)}'
    assert '*' in (ROOT/'.dockerignore').read_text().splitlines(), '.dockerignore must start from nothing (`*`)'

def run_step(args:str, path:Path) -> subprocess.CompletedProcess:
    "Run a RUN step's shell command here, as `sh -c` runs it in the build, its constraints file moved to `path`."
    env = {**os.environ, 'PATH': f'{Path(sys.executable).parent}{os.pathsep}{os.environ["PATH"]}'}  # this Python's pip and python
    return subprocess.run(['sh', '-c', args.replace(constraints_path(), str(path))], capture_output=True, text=True, env=env, timeout=120)

def this_torch() -> tuple:
    "This machine's torch version and CUDA (None for a CPU build), read from `torch/version.py` without importing torch."
    tree = ast.parse((Path(importlib.util.find_spec('torch').origin).parent/'version.py').read_text())
    found = {(n.targets[0] if isinstance(n, ast.Assign) else n.target).id: ast.literal_eval(n.value)
             for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None}
    return found['__version__'], found['cuda']

def test_the_build_time_check_fails_in_one_line(tmp_path):
    "The check, run on this machine's torch: a torch other than the base's, a CPU torch, or no torch in the constraints."
    version, cuda = this_torch()
    path = tmp_path/'torch-constraints.txt'
    written = run_step(step(r'pip list --format=freeze')[1], path)  # the constraints step, on this machine's packages
    assert written.returncode == 0, written.stderr
    assert f'torch=={version}' in path.read_text().splitlines()
    assert not any(l.lower().startswith(('transformers==', 'accelerate==')) for l in path.read_text().splitlines())
    check = step(r'is_torch_available\(\)')[1]
    res = run_step(check, path)
    if cuda is None: assert (res.returncode, res.stderr) == (1, f'image check failed: torch {version} is not a CUDA build\n')
    else: assert res.returncode == 0 and res.stdout.startswith(f'image check: torch {version} CUDA {cuda}'), res
    path.write_text('torch==2.0.0\n')
    res = run_step(check, path)
    assert (res.returncode, res.stderr) == (1, f'image check failed: torch {version} replaced the base image torch 2.0.0\n')
    path.write_text('triton==3.4.0\n')
    res = run_step(check, path)
    assert res.returncode == 1 and res.stderr.startswith('image check failed: IndexError') and res.stderr.count('\n') == 1, res.stderr

def package_index() -> str:
    "The index pip installs from here: `PIP_INDEX_URL`, pip's configuration, or PyPI."
    if os.environ.get('PIP_INDEX_URL'): return os.environ['PIP_INDEX_URL'].split()[0]
    got = subprocess.run([sys.executable, '-m', 'pip', 'config', 'get', 'global.index-url'], capture_output=True, text=True)
    return got.stdout.strip() if got.returncode == 0 and got.stdout.strip() else 'https://pypi.org/simple'

def unreachable(index:str) -> str:
    "Why the package index cannot be reached, or '' when it answers."
    try:
        context = ssl.create_default_context(cafile=os.environ.get('PIP_CERT'))
        with urllib.request.urlopen(f'{index.rstrip("/")}/torch/', timeout=20, context=context): return ''
    except Exception as e: return f'{type(e).__name__}: {e}'

@pytest.mark.slow
def test_pip_keeps_the_base_torch_and_its_cuda(tmp_path):
    "The image's install, resolved with pip against the base's torch (`torch==VERSION`) from the repository's root."
    torch_version, cuda_major = base_torch()
    index = package_index()
    if why := unreachable(index): pytest.skip(f'the package index {index} cannot be reached ({why}): pip cannot resolve the image')
    constraints, report = tmp_path/'constraints.txt', tmp_path/'report.json'
    constraints.write_text(f'torch=={torch_version}\n')
    res = subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--ignore-installed', '--quiet', '--report', str(report),
                          '-c', str(constraints), f'.[{install_extras()}]'], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f'pip cannot install the image with torch=={torch_version}: {res.stderr[-3000:]}'
    rep = json.loads(report.read_text())
    installs = {canonicalize_name(i['metadata']['name']): i['metadata'] for i in rep['install']}
    assert installs['torch']['version'] == torch_version, f"pip would install torch {installs['torch']['version']}, not the base's {torch_version}"
    env = {**default_environment(), **rep['environment'], 'extra': ''}
    from_torch = {canonicalize_name(r.name) for r in map(Requirement, installs['torch'].get('requires_dist', []))
                  if r.name.lower().startswith('nvidia-') and (r.marker is None or r.marker.evaluate(env))}
    if (env['platform_system'], env['platform_machine']) == ('Linux', 'x86_64'):
        assert from_torch, f'torch {torch_version} brings no nvidia-* libraries here: not the CUDA build'
    wrong = sorted(n for n in installs if n in from_torch and not n.endswith(f'-cu{cuda_major}')
                   or re.search(r'-cu\d+$', n) and not n.endswith(f'-cu{cuda_major}'))
    assert not wrong, f'CUDA libraries other than CUDA {cuda_major} ones: {wrong}'
