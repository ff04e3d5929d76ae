"""Token-level distillation of a decoder-only student: our trainer (`make_trainer(cfg, teacher=OnlineTeacher)`)
against TRL's `GKDTrainer` (`trl.experimental.gkd`) with no on-policy batches, the same loss, in one run.

What TRL's GKD computes with `lmbda=0` (and `seq_kd=False`): every batch is the dataset's own completions; the loss
is the generalised JSD(β) between student and teacher at the completion tokens only (`labels != -100`), averaged
over them, with no cross-entropy term; the divergence is taken at temperature 1 (`GKDConfig.temperature` only
softens sampling, which lmbda=0 never does). Ours computes the same terms: `model_type='standard'` (the label
task only), with `TrainConfig(kd_loss='jsd', kd_beta=0.5, kd_temperature=1, kd_on='label', ce_weight=0)`. Our JSD is TRL's divided
by β(1 − β), a constant factor, which changes nothing about speed or memory. Two small differences remain, neither
of them work that matters: TRL's targets are the completion plus the chat template's line break after
`<|im_end|>` (one more token an example), and it compares the whole padded vocabulary (151,936) where we cut both
distributions to the tokenizer's 151,665 tokens.

Both see the same prompts (the tokenizer's chat template, the bare question as the user turn as our
standard-finetuning causal student reads it: `task_message(question, 'predict', 'standard')`, and the gold label
as the assistant turn), the same teacher and student twins (random weights, seeds 1 and 0): the student is the
Qwen2.5-0.5B architecture cut to 4 layers, the teacher the Qwen2.5-1.5B architecture cut to 4 layers, so that one
step of batch 4 takes seconds on 2 CPU cores (`--student_layers 0 --teacher_layers 0` for the full twins). The
teacher is in bf16 where the hardware multiplies it natively, else fp32 (as `distill_sbs.training.open_teacher`
loads it), in both. Same examples, batch size, steps, learning rate, seed; TRL's default of gradient checkpointing
is turned off (ours has it off), and bf16 autocast is what `pick_hardware` picks for both (on a CPU: off). Every
variant runs in a fresh subprocess, so each peak memory is its own (ru_maxrss on a CPU,
`torch.cuda.max_memory_allocated` on a GPU). The clock starts after the first step.

- trl: `GKDTrainer(lmbda=0, beta=0.5, temperature=1)`;
- ours-plain: `make_trainer(fast=False)`: fp32 matrix products, a random sampler, as TRL;
- ours-fast: `make_trainer` with its fast settings (length grouping, fused AdamW, and on a CPU that multiplies bf16
  natively, fp32 matrix products through bf16).

    python benchmarks/kd_gkd.py                              # 32 examples, batch 4, 8 steps
    python benchmarks/kd_gkd.py --student_layers 0 --teacher_layers 0 --examples 256 --batch_size 16 --steps 16   # on a GPU

Needs ../shared (the Qwen2.5 tokenizer and architectures, the paper's CQA data) and `trl` (1.16: GKD lives in
`trl.experimental.gkd`).
"""
import argparse, json, subprocess, sys
import torch

from kd_common import SHARED, clock, device_line, less, peak_gib, twin

def data(n):
    from distill_sbs.data import load_data
    d = load_data('cqa', data_dir=SHARED/'data')['train']
    return d.shuffle(seed=0).select(range(n))


def run_variant(variant, a):
    "One training variant, in this process: examples per second and peak memory, as JSON on stdout."
    from transformers import AutoTokenizer
    from distill_sbs.hardware import pick_hardware
    from distill_sbs.students import student_kind, task_message
    hw = pick_hardware()
    rows, tok = data(a.examples), AutoTokenizer.from_pretrained(SHARED/'models'/'qwen2.5-tokenizer')
    model = twin(a.student, a.student_layers, seed=0).to(hw.device)
    teacher = twin(a.teacher, a.teacher_layers, seed=1, dtype=torch.bfloat16 if hw.native_bf16 else torch.float32)
    timer = clock()
    common = dict(max_steps=a.steps, per_device_train_batch_size=a.batch_size, learning_rate=1e-5, logging_steps=10**6,
                  disable_tqdm=True, report_to='none', dataloader_drop_last=True, save_strategy='no', seed=42)
    if variant.startswith('ours'):
        from datasets import DatasetDict
        from distill_sbs.collator import tokenize_tasks
        from distill_sbs.kd_teachers import online_teacher
        from distill_sbs.multitask import TrainConfig, make_trainer
        kind = student_kind(model); kind.prepare(tok)
        tokd = tokenize_tasks(DatasetDict({'train': rows}), tok, 'standard', max_input_length=10**6, max_label_length=10**6,
                              max_rationale_length=10**6, kind=kind)
        cfg = TrainConfig(model_type='standard', teacher=f'{a.teacher} twin', kd_loss='jsd', kd_beta=a.beta, kd_temperature=a.temperature,
                          kd_on='label', ce_weight=0.0, batch_size=a.batch_size, max_steps=a.steps, lr=common['learning_rate'],
                          warmup_steps=0, run=common['seed'], no_log=True, output_dir=f'{a.tmp}/{variant}')
        trainer = make_trainer(model, tok, tokd, cfg, teacher=online_teacher(teacher, tok, model, tok), fast=variant == 'ours-fast',
                               hardware=hw, callbacks=[timer], eval_rows=None, logging_steps=common['logging_steps'], disable_tqdm=True,
                               dataloader_drop_last=True, save_strategy='no')
    else:
        from datasets import Dataset
        from trl.experimental.gkd import GKDConfig, GKDTrainer
        ds = Dataset.from_list([{'messages': [{'role': 'user', 'content': task_message(r['input'], 'predict', 'standard')},
                                              {'role': 'assistant', 'content': r['label']}]} for r in rows])
        args = GKDConfig(output_dir=f'{a.tmp}/{variant}', lmbda=0.0, beta=a.beta, temperature=a.temperature, seq_kd=False,
                         gradient_checkpointing=False, bf16=hw.bf16, use_cpu=hw.device == 'cpu', **common)
        trainer = GKDTrainer(model=model, teacher_model=teacher, args=args, train_dataset=ds, processing_class=tok, callbacks=[timer])
    trainer.train()
    steps = len(timer.times) - 1
    print(json.dumps({'examples_per_s': steps * a.batch_size / (timer.times[-1] - timer.times[0]), 'peak_gib': peak_gib(), 'steps': steps}))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--student', default='qwen2.5-0.5b')
    p.add_argument('--teacher', default='qwen2.5-1.5b')
    p.add_argument('--student_layers', type=int, default=4, help='cut the student twin to this many layers (0: all)')
    p.add_argument('--teacher_layers', type=int, default=4, help='cut the teacher twin to this many layers (0: all)')
    p.add_argument('--examples', type=int, default=32)
    p.add_argument('--batch_size', type=int, default=4)
    p.add_argument('--steps', type=int, default=8)
    p.add_argument('--beta', type=float, default=0.5, help='JSD(β), both trainers')
    p.add_argument('--temperature', type=float, default=1.0, help=argparse.SUPPRESS)  # TRL's loss is at 1 whatever it is
    p.add_argument('--variant', help=argparse.SUPPRESS)
    p.add_argument('--tmp', default='/tmp/kd_gkd_bench', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.variant: return run_variant(a.variant, a)
    print(device_line())
    layers = lambda n: f' cut to {n} layers' if n else ''
    print(f'{a.teacher} twin{layers(a.teacher_layers)} -> {a.student} twin{layers(a.student_layers)} (random weights), Qwen2.5 tokenizer, '
          f'CQA labels; JSD(beta={a.beta}) only, no CE, no on-policy; {a.examples} examples, batch {a.batch_size}, {a.steps} steps')
    res = {}
    for v in ('trl', 'ours-plain', 'ours-fast'):
        out = subprocess.run([sys.executable, __file__, '--variant', v, *sys.argv[1:]], capture_output=True, text=True)
        if out.returncode: print(f'{v}: failed\n{out.stderr[-3000:]}', flush=True); continue
        res[v] = r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{v:11} {r['examples_per_s']:7.3f} examples/s   peak {r['peak_gib']:6.2f} GiB   ({r['steps']} timed steps)", flush=True)
    if 'trl' in res:
        base = res['trl']
        for v in ('ours-plain', 'ours-fast'):
            if v in res:
                print(f"{v} / TRL: {res[v]['examples_per_s'] / base['examples_per_s']:.2f}x the speed, "
                      f"{less(res[v]['peak_gib'], base['peak_gib'])} peak memory")

if __name__ == '__main__': main()
