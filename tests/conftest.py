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

@pytest.fixture(scope='session')
def smollm2(tmp_path_factory):
    "SmolLM2-135M-Instruct from `../shared`, converted once into an ordinary model folder (skips without `../shared`)."
    src = SHARED/'models'/'smollm2-135m-instruct'
    if not (src/'to_hf.py').exists(): pytest.skip(f'needs the real SmolLM2 model in {src} (absent in a fresh clone elsewhere)')
    pytest.importorskip('gguf', reason='converting SmolLM2 needs the gguf package (the dev extra has it)')
    cache = Path(os.environ.get('XDG_CACHE_HOME', Path.home()/'.cache'))/'distill_sbs'/'smollm2-135m-instruct'
    if not (cache/'model.safetensors').exists():
        tmp = tmp_path_factory.mktemp('smollm2')/'model'
        subprocess.run([sys.executable, str(src/'to_hf.py'), str(tmp)], check=True, capture_output=True, timeout=600)
        cache.parent.mkdir(parents=True, exist_ok=True)
        if not cache.exists(): tmp.rename(cache) if tmp.stat().st_dev == cache.parent.stat().st_dev else __import__('shutil').copytree(tmp, cache)
    return cache

@pytest.fixture(scope='session')
def qwen_twin(tmp_path_factory):
    "A folder with a Qwen2.5-0.5B twin shrunk to 2 layers of width 64 (random weights) and the real Qwen2.5 tokenizer (skips without `../shared`)."
    models = SHARED/'models'
    if not (models/'qwen2.5-tokenizer'/'tokenizer.json').exists(): pytest.skip(f'needs the Qwen2.5 tokenizer in {models} (absent in a fresh clone elsewhere)')
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    cfg = AutoConfig.from_pretrained(models/'qwen2.5-0.5b-config')
    cfg.update(dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    max_window_layers=2, layer_types=['full_attention'] * 2))
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp('qwen-twin')
    AutoModelForCausalLM.from_config(cfg).save_pretrained(d)
    AutoTokenizer.from_pretrained(models/'qwen2.5-tokenizer').save_pretrained(d)
    return d
