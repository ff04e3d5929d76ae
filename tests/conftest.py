import os, subprocess, sys
from pathlib import Path
import pytest
from hypothesis import HealthCheck, settings, strategies as st

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent/'shared'

def run_cli(*args, cwd=None, env=None, timeout=300):
    "Run the installed `distill-sbs` in a real subprocess; returns the CompletedProcess."
    return subprocess.run(['distill-sbs', *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})

@pytest.fixture
def shared():
    "The `../shared` folder beside the checkout; tests that need it skip when a fresh clone has none."
    if not (SHARED/'data'/'cqa').is_dir(): pytest.skip(f'needs the development data in {SHARED} (absent in a fresh clone elsewhere)')
    return SHARED

# Generated inputs for the fault tests: any JSON value, and the settings they run under (bounded, the same every run)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=10)

def fuzz(n): return settings(max_examples=n, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
