"""Training throughput of the multitask trainer: the fast settings against the straightforward ones, in one run.

An example is one input trained on both tasks (`predict:` and `explain:`). Every variant trains a freshly
initialised model of the same config on the same examples (one epoch over the same subset), with the same batch
size; the clock starts after the first step (warm-up) and stops at the last.

    python benchmarks/train_throughput.py                      # flan-t5-small config on CQA with PaLM rationales
    python benchmarks/train_throughput.py --config flan-t5-base --examples 2048 --batch_size 32   # on a GPU

Uses ../shared (the paper's CQA data, the real T5 tokenizer, the Flan-T5 configs) when it is beside the checkout;
without it, the built-in task, the byte-level tokenizer and the tiny student.
"""
import argparse, sys, tempfile, time
from pathlib import Path
import torch
from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer, TrainerCallback

from distill_sbs.data import load_data
from distill_sbs.collator import tokenize_tasks
from distill_sbs.hardware import cpu_info, native_bf16, pick_hardware
from distill_sbs.multitask import TrainConfig, make_trainer
from distill_sbs.students import tiny_student

SHARED = Path(__file__).resolve().parents[2]/'shared'

class StepClock(TrainerCallback):
    "Times of the ends of training steps."
    def __init__(self): self.times = []
    def on_step_end(self, args, state, control, **kw):
        if torch.cuda.is_available(): torch.cuda.synchronize()
        self.times.append(time.perf_counter())

def setup(config, n):
    if (SHARED/'data'/'cqa').is_dir():
        data = load_data('cqa', data_dir=SHARED/'data')
        tok = AutoTokenizer.from_pretrained(SHARED/'models'/'t5-tokenizer')
        cfg = AutoConfig.from_pretrained(SHARED/'models'/f'{config}-config')
        make_model = lambda: AutoModelForSeq2SeqLM.from_config(cfg)
        what = f'{config} config (random weights), CQA with PaLM rationales, T5 tokenizer'
    else:
        data = load_data('arith')
        tok = tiny_student()[1]
        make_model = lambda: tiny_student()[0]
        what = 'tiny student, built-in arithmetic, byte-level tokenizer (no ../shared here)'
    train = data['train'].filter(lambda r: r is not None, input_columns='rationale').shuffle(seed=0).select(range(n))
    data = type(data)({'train': train})
    return tokenize_tasks(data, tok, max_input_length=1024, max_rationale_length=256), tok, make_model, what

def measure(name, tokd, tok, make_model, batch_size, one_pass=False, bf16=None, fast=True, matmul_precision=None, **kw):
    "Examples per second of one variant: its settings (`one_pass`, `bf16`), how it uses the hardware (`fast`, `matmul_precision`), `TrainingArguments` (`kw`)."
    torch.manual_seed(0)
    model = make_model()
    if torch.cuda.is_available(): model = model.cuda()
    clock = StepClock()
    cfg = TrainConfig(batch_size=batch_size, lr=1e-4, warmup_steps=0, run=42, one_pass=one_pass, bf16=bf16, no_log=True,
                      output_dir=tempfile.mkdtemp(prefix='train_throughput_'))
    trainer = make_trainer(model, tok, tokd, cfg, fast=fast, matmul_precision=matmul_precision, callbacks=[clock],
                           max_steps=-1, num_train_epochs=1, logging_steps=10**6, disable_tqdm=True, dataloader_drop_last=True, **kw)
    trainer.train()
    steps = len(clock.times) - 1
    ex_per_s = steps * batch_size / (clock.times[-1] - clock.times[0])
    print(f'{name:70} {ex_per_s:8.2f} examples/s', flush=True)
    return ex_per_s

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default='flan-t5-small', help='a config in ../shared/models (flan-t5-small, -base, -large)')
    p.add_argument('--examples', type=int, default=224, help='examples trained by each variant in each round (one epoch)')
    p.add_argument('--batch_size', type=int, default=16)
    p.add_argument('--compile', action='store_true', help='also measure torch.compile on top of the fast settings')
    p.add_argument('--rounds', type=int, default=2, help='rounds over all variants; the best of each is reported')
    a = p.parse_args(argv)
    tokd, tok, make_model, what = setup(a.config, a.examples)
    on_gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if on_gpu else f'{cpu_info()[0]}, {torch.get_num_threads()} threads'
    native = native_bf16('cuda' if on_gpu else 'cpu')
    print(f'{what}\n{device}; multiplies bf16 natively: {"yes" if native else "no"}; batch size {a.batch_size}, '
          f'{a.examples} examples each, torch {torch.__version__}\n')
    hw = pick_hardware()
    precision = 'bf16 autocast + TF32' if hw.bf16 else {'medium': 'fp32 matmuls through bf16', 'high': 'TF32'}.get(hw.matmul_precision(), 'fp32')
    variants = {'straightforward': ('straightforward: two passes, random order, fp32', dict(fast=False)),
                'one_pass': ('one pass (stacked tasks), plain settings', dict(fast=False, one_pass=True)),
                'fast': (f'fast: two passes, grouped, fused AdamW, {precision}', {})}
    if not on_gpu and native:  # without bf16 units the fast settings already are full precision, and autocast crawls
        variants['fast_fp32'] = ('fast settings at full fp32 matmul precision', dict(matmul_precision='highest'))
        variants['fast_bf16'] = ('fast + bf16 autocast on this CPU', dict(bf16=True))
    elif not on_gpu:
        print('skipped: bf16 autocast, since this CPU has no bf16 units (on such a CPU it ran for over ten minutes)\n')
    if a.compile: variants['fast_compile'] = ('fast + torch.compile', dict(torch_compile=True))
    # rounds alternate the variants, so a slow spell of a shared machine does not land on one variant; best of each
    runs = {k: [] for k in variants}
    for r in range(a.rounds):
        print(f'round {r + 1}')
        for k, (name, kw) in variants.items(): runs[k].append(measure(name, tokd, tok, make_model, a.batch_size, **kw))
    res = {k: max(v) for k, v in runs.items()}
    print('\nbest of', a.rounds, 'rounds:')
    for k, (name, _) in variants.items(): print(f'{name:70} {res[k]:8.2f} examples/s')
    base = res['straightforward']
    print('\nspeed-up over straightforward: ' + ', '.join(f'{k} {v / base:.2f}x' for k, v in res.items() if k != 'straightforward'))
    return res

if __name__ == '__main__': main()
