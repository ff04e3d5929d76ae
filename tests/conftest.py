import os, subprocess, sys
from pathlib import Path
import pytest

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
