"""The repository's GitHub workflows (tests, the documentation site, a release to PyPI), checked offline: against
GitHub's workflow schema (`check-jsonschema`), by `zizmor`'s security audit, and for the project's own rules: every
action pinned by commit with its version in a comment, no permission a job does not name, and a release that
publishes exactly the files its tests tested."""
import re, shutil, subprocess, sys
from pathlib import Path
import pytest, yaml
from conftest import ROOT

WORKFLOWS = sorted((ROOT/'.github'/'workflows').glob('*.yaml'))

def tool(name):
    path = Path(sys.executable).parent/name
    return str(path) if path.exists() else shutil.which(name) or pytest.fail(f'{name} is not installed: pip install -e ".[dev]"')

def test_there_are_the_three_workflows():
    assert {w.stem for w in WORKFLOWS} == {'test', 'docs', 'release'}

def test_the_workflows_fit_githubs_schema():
    res = subprocess.run([tool('check-jsonschema'), '--builtin-schema', 'vendor.github-workflows', *map(str, WORKFLOWS)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr

def test_dependabot_config_fits_its_schema():
    res = subprocess.run([tool('check-jsonschema'), '--builtin-schema', 'vendor.dependabot', str(ROOT/'.github'/'dependabot.yml')],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr

def test_zizmor_finds_nothing_to_fix():
    res = subprocess.run([tool('zizmor'), '--offline', '--persona', 'pedantic', '--no-progress', str(ROOT/'.github'/'workflows')],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and 'No findings' in res.stdout + res.stderr, res.stdout + res.stderr

@pytest.mark.parametrize('wf', WORKFLOWS, ids=lambda p: p.name)
def test_actions_pinned_and_permissions_named(wf):
    text = wf.read_text()
    for line in re.findall(r'uses:.*', text):
        assert re.fullmatch(r'uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*', line), f'{wf.name}: not pinned by commit: {line}'
    doc = yaml.safe_load(text)
    assert doc['permissions'] == {}, f'{wf.name}: the workflow grants nothing by default'
    for name, job in doc['jobs'].items(): assert 'permissions' in job, f'{wf.name}: job {name} must name its permissions'

def test_a_release_publishes_what_its_tests_tested():
    jobs = yaml.safe_load((ROOT/'.github'/'workflows'/'release.yaml').read_text())['jobs']
    assert jobs['publish']['needs'] == ['build', 'test'] and jobs['publish']['permissions'] == {'id-token': 'write'}
    steps = lambda job: ' '.join(str(s) for s in jobs[job]['steps'])
    assert 'python -m build' in steps('build') and 'twine check' in steps('build') and 'upload-artifact' in steps('build')
    assert 'download-artifact' in steps('test') and 'dist/*.whl' in steps('test') and 'DIST_WHEEL=' in steps('test') and 'pytest' in steps('test')
    assert 'download-artifact' in steps('publish') and 'python -m build' not in steps('publish'), 'publish builds nothing of its own'
    assert 'password' not in steps('publish') and 'token' not in steps('publish').lower(), 'trusted publishing: no token'
