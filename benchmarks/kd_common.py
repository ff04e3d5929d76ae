"""What the token-level distillation benchmarks share: random-weight twins of ../shared's architectures, a step clock,
peak memory, and the line that says which device ran them."""
import resource, time
from pathlib import Path
import torch

SHARED = Path(__file__).resolve().parents[2]/'shared'

def twin(config, layers=None, seed=0, dtype=torch.float32):
    "A random-weight twin of `config` (seeded), optionally cut to `layers` layers (encoder and decoder for T5)."
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM
    cfg = AutoConfig.from_pretrained(SHARED/'models'/f'{config}-config')
    if layers:
        if cfg.is_encoder_decoder: cfg.num_layers = cfg.num_decoder_layers = layers
        else:
            cfg.num_hidden_layers = cfg.max_window_layers = layers
            if getattr(cfg, 'layer_types', None): cfg.layer_types = cfg.layer_types[:layers]
    torch.manual_seed(seed)
    auto = AutoModelForSeq2SeqLM if cfg.is_encoder_decoder else AutoModelForCausalLM
    return auto.from_config(cfg, dtype=dtype)

def peak_gib():
    "This process's peak memory: the GPU's allocations, or the CPU's resident set."
    if torch.cuda.is_available(): return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux

def less(x, base):
    "How much less memory `x` is than `base`, in words."
    d = 1 - x / base
    return f'{d:.0%} less' if d >= 0 else f'{-d:.0%} more'

def sync():
    if torch.cuda.is_available(): torch.cuda.synchronize()

def clock():
    "A `TrainerCallback` that notes the time at the end of every step."
    from transformers import TrainerCallback
    class StepClock(TrainerCallback):
        def __init__(self): self.times = []
        def on_step_end(self, args, state, control, **kw):
            sync(); self.times.append(time.perf_counter())
    return StepClock()

def device_line() -> str:
    "The device, whether it multiplies bf16 natively (so whether a teacher runs in bf16), torch and its threads."
    from distill_sbs.hardware import cpu_info, native_bf16
    on_gpu = torch.cuda.is_available()
    dev = torch.cuda.get_device_name(0) if on_gpu else cpu_info()[0]
    native = native_bf16('cuda' if on_gpu else 'cpu')
    return (f'device: {dev}; multiplies bf16 natively: {native} (so the teacher is {"bf16" if native else "fp32"}); '
            f'torch {torch.__version__}, {torch.get_num_threads()} threads')
