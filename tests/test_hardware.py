"""The device and precision chosen on the GPUs people rent, faked: torch is told it has a T4, V100, A100, L4 or H100
(name, compute capability, memory, and an `is_bf16_supported` that answers as torch's does, True on an older GPU unless
`including_emulation=False`). Each GPU x student kind x what was asked gets the precision it should; the start-up line
says which device is used and why not the GPU when one is attached but PyTorch cannot use it."""
import types, warnings
import pytest, torch
import transformers.training_args
from distill_sbs import hardware
from distill_sbs.core import UserError
from distill_sbs.hardware import device_line, native_bf16, nvidia_attached, pick_hardware, serving_dtype
from distill_sbs.multitask import ConfigError, TrainConfig, make_trainer, training_args, training_hardware
import distill_sbs.multitask as multitask
from conftest import SMALL, cli, error_line

GPUS = {'T4': ('Tesla T4', 7, 5, 15), 'V100': ('Tesla V100-SXM2-16GB', 7, 0, 16), 'A100': ('NVIDIA A100-SXM4-40GB', 8, 0, 40),
        'L4': ('NVIDIA L4', 8, 9, 22), 'H100': ('NVIDIA H100 80GB HBM3', 9, 0, 80)}
OLD, AMPERE_ON = ('T4', 'V100'), ('A100', 'L4', 'H100')

@pytest.fixture
def on_gpu(monkeypatch):
    "Make torch report `count` GPUs like `gpu` (a key of GPUS) for the rest of the test."
    def fake(gpu, count=1):
        name, major, minor, gib = GPUS[gpu]
        props = types.SimpleNamespace(name=name, major=major, minor=minor, total_memory=gib * 2**30)
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: count)
        monkeypatch.setattr(torch.cuda, 'get_device_properties', lambda device=0: props)
        monkeypatch.setattr(torch.cuda, 'get_device_capability', lambda device=0: (major, minor))
        def is_bf16_supported(including_emulation=True): return major >= 8 or including_emulation  # torch's: older GPUs emulate bf16
        monkeypatch.setattr(torch.cuda, 'is_bf16_supported', is_bf16_supported)
        monkeypatch.setattr(torch.cuda, 'set_device', lambda device: None)  # `TrainingArguments` selects cuda:0
        return props
    yield fake
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(reset_partial_state=True)  # the device state `TrainingArguments` set up on the fake GPU

@pytest.fixture
def no_gpu(monkeypatch):
    "A machine whose torch sees no GPU; `attached` says whether an NVIDIA GPU is there all the same."
    def fake(attached=False):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
        monkeypatch.setattr(hardware, 'nvidia_attached', lambda: attached)
    return fake

@pytest.mark.parametrize('gpu', GPUS)
def test_the_choice_needs_only_the_devices_properties(monkeypatch, gpu):
    "Faked as little as a GPU can be (is_available and its properties): the choice is read from the compute capability, never torch's emulation check."
    name, major, minor, gib = GPUS[gpu]
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_properties', lambda device=0: types.SimpleNamespace(name=name, major=major, minor=minor, total_memory=gib * 2**30))
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda including_emulation=True: True)  # a T4 answers True here: the emulation
    hw, causal = pick_hardware(), pick_hardware(causal=True)
    assert (hw.bf16, hw.tf32, causal.fp16) == ((True, True, False) if gpu in AMPERE_ON else (False, False, True))
    assert hardware.serving_dtype('auto') == ('bfloat16' if gpu in AMPERE_ON else 'float32')
    if gpu in OLD:
        with pytest.raises(UserError, match=f'^dtype bfloat16: {name} has no native bf16'): hardware.serving_dtype('bfloat16')

ASKED = {'auto': {}, 'fp32': dict(bf16=False, fp16=False), 'bf16': dict(bf16=True)}

def trains_in(hw): return ('bf16' if hw.bf16 else 'fp16' if hw.fp16 else 'fp32') + ('+tf32' if hw.tf32 else '')

@pytest.mark.parametrize('asked', ASKED)
@pytest.mark.parametrize('kind', ['seq2seq', 'causal'])
@pytest.mark.parametrize('gpu', GPUS)
def test_each_gpu_student_and_ask_gets_its_precision(on_gpu, gpu, kind, asked):
    on_gpu(gpu)
    causal = kind == 'causal'
    if gpu in OLD and asked == 'bf16':
        with pytest.raises(UserError) as e: pick_hardware(causal=causal, **ASKED[asked])
        line = str(e.value)
        assert '\n' not in line and line.startswith(f'--bf16: {GPUS[gpu][0]} (compute capability {GPUS[gpu][1]}.{GPUS[gpu][2]}) has no native bf16')
        assert ('fp16 with loss scaling' if causal else 'fp32') in line
        return
    hw = pick_hardware(causal=causal, **ASKED[asked])
    expected = {('old', 'auto'): 'fp16' if causal else 'fp32', ('old', 'fp32'): 'fp32',
                ('new', 'auto'): 'bf16+tf32', ('new', 'fp32'): 'fp32+tf32', ('new', 'bf16'): 'bf16+tf32'}
    assert trains_in(hw) == expected['old' if gpu in OLD else 'new', asked]
    assert hw.native_bf16 == (gpu in AMPERE_ON) and hw.device == 'cuda' and hw.name == GPUS[gpu][0]
    assert not (gpu in OLD and hw.bf16), 'an older GPU never trains in (emulated) bf16'
    assert hw.memory_gib == GPUS[gpu][3] and bool(hw.notes) == (hw.precision != 'bf16 autocast' or hw.memory_gib < 20)  # why, unless bf16 on a big GPU

@pytest.mark.parametrize('gpu', OLD)
def test_an_older_gpu_has_no_native_bf16_though_torch_can_emulate_it(on_gpu, gpu):
    on_gpu(gpu)
    assert torch.cuda.is_bf16_supported(), 'the fake answers as torch does: emulated bf16 counts unless asked not to'
    assert not native_bf16('cuda')
    assert serving_dtype('auto') == 'float32' and serving_dtype('auto', 'cuda') == 'float32'

@pytest.mark.parametrize('gpu', AMPERE_ON)
def test_ampere_on_serves_bfloat16(on_gpu, gpu):
    on_gpu(gpu)
    assert native_bf16('cuda') and serving_dtype('auto') == 'bfloat16'

@pytest.mark.parametrize('gpu', OLD)
def test_a_causal_student_on_an_older_gpu_gets_trainer_fp16_with_loss_scaling(on_gpu, gpu, tmp_path):
    on_gpu(gpu)
    hw = training_hardware(causal=True)
    first = str(hw).splitlines()[0]
    assert first.endswith('; fp16 autocast + loss scaling') and 'loss scaling' in hw.notes[0] and '--fp16 false' in hw.notes[0]
    args = training_args(str(tmp_path), hardware=hw)
    assert (args.fp16, args.bf16, args.tf32) == (True, False, None)  # the Trainer's fp16 is autocast with a GradScaler
    t5 = training_hardware(causal=False)
    assert str(t5).splitlines()[0].endswith('; fp32') and 'T5 overflows in fp16' in t5.notes[0]
    assert (training_args(str(tmp_path), hardware=t5).fp16, training_args(str(tmp_path), hardware=t5).bf16) == (False, False)
    assert trains_in(training_hardware(fast=False, causal=True)) == 'fp32', 'the plain baseline never autocasts'
    assert trains_in(training_hardware(causal=True, fp16=False)) == 'fp32'
    assert trains_in(training_hardware(causal=True, bf16=False)) == 'fp32', '--bf16 false means fp32, as its help says'

@pytest.mark.parametrize('gpu', AMPERE_ON)
def test_ampere_on_trainer_gets_bf16_and_tf32(on_gpu, gpu, tmp_path, monkeypatch):
    on_gpu(gpu)
    # the Trainer checks TF32 against the real device (and caches the answer), and turns it on globally: both faked here
    monkeypatch.setattr(transformers.training_args, 'is_torch_tf32_available', lambda: True)
    monkeypatch.setattr(transformers.training_args, 'enable_tf32', lambda on: None)
    for causal in (False, True):
        hw = training_hardware(causal=causal)
        assert str(hw).splitlines()[0].endswith('; bf16 autocast + TF32')
        args = training_args(str(tmp_path), hardware=hw)
        assert (args.bf16, args.fp16, args.tf32) == (True, False, True)
        assert hw.matmul_precision() == 'high'

def test_forcing_fp16_is_for_decoder_only_students_on_a_gpu(on_gpu, no_gpu):
    on_gpu('A100')
    assert trains_in(pick_hardware(fp16=True, causal=True)) == 'fp16+tf32'  # asked for: honoured, even where bf16 is native
    with pytest.raises(UserError, match=r'^--fp16: a seq2seq \(T5\) student overflows in fp16'): pick_hardware(fp16=True, causal=False)
    with pytest.raises(UserError, match=r'^--bf16 and --fp16 contradict each other'): pick_hardware(bf16=True, fp16=True, causal=True)
    no_gpu()
    with pytest.raises(UserError, match=r'^--fp16: fp16 autocast with loss scaling is for GPUs'): pick_hardware(fp16=True, causal=True)
    cpu = pick_hardware(causal=True)
    assert trains_in(cpu) == 'fp32' and cpu.device == 'cpu' and not cpu.fp16

def test_the_fp16_setting(tmp_path):
    from distill_sbs.training import parse_config
    assert parse_config([]).fp16 is None and parse_config(['--fp16', 'false']).fp16 is False and parse_config(['--fp16']).fp16 is True
    with pytest.raises(ConfigError, match='--bf16 and --fp16 contradict each other'): TrainConfig(bf16=True, fp16=True, output_dir=str(tmp_path))

def test_make_trainer_tells_the_hardware_the_students_kind(monkeypatch, tmp_path):
    "make_trainer learns from the model whether the student is decoder-only, and passes `fp16` on."
    from distill_sbs.collator import tokenize_tasks
    from distill_sbs.data import load_data
    from distill_sbs.students import student_kind, tiny_causal, tiny_student
    seen, real = [], multitask.training_hardware
    monkeypatch.setattr(multitask, 'training_hardware', lambda *a: seen.append(a) or real(*a))
    data = load_data('arith', n_train=12, n_test=4)
    cfg = TrainConfig(max_steps=1, batch_size=4, no_log=True, output_dir=str(tmp_path), fp16=False)
    for make, causal in ((tiny_student, False), (tiny_causal, True)):
        model, tok = make()
        make_trainer(model, tok, tokenize_tasks(data, tok, kind=student_kind(model)), cfg, disable_tqdm=True)
        assert seen[-1][3:] == (False, causal), seen[-1]

def test_a_t4_refuses_bf16_in_one_line_before_anything_is_loaded(on_gpu, tmp_path, monkeypatch):
    on_gpu('T4')
    monkeypatch.setattr('distill_sbs.training.load_data', lambda cfg: pytest.fail('the data was loaded before the refusal'))
    res = cli('train', '--bf16', 'true', '--output_dir', tmp_path/'run')
    assert 'Tesla T4 (compute capability 7.5) has no native bf16' in error_line(res, 'train')
    assert res.stdout.splitlines()[0] == 'device: cuda (Tesla T4, 15 GiB)'
    assert not (tmp_path/'run').exists()

def test_fp16_for_a_t5_student_is_refused_in_one_line(on_gpu, tmp_path):
    on_gpu('T4')
    res = cli('train', *SMALL, '--fp16', '--output_dir', tmp_path/'run')
    assert '--fp16: a seq2seq (T5) student overflows in fp16' in error_line(res, 'train')
    assert not (tmp_path/'run').exists()

def test_fp16_for_a_t5_student_leaves_an_earlier_run_alone(on_gpu, tmp_path):
    "The student's kind is read from its config before `--overwrite` deletes anything."
    on_gpu('T4')
    (tmp_path/'run').mkdir(); (tmp_path/'run'/'run.json').write_text('{}')
    res = cli('train', *SMALL, '--fp16', '--overwrite', '--output_dir', tmp_path/'run')
    assert '--fp16: a seq2seq (T5) student overflows in fp16' in error_line(res, 'train')
    assert (tmp_path/'run'/'run.json').exists()

def test_fp16_without_a_gpu_is_refused_after_the_device_line(no_gpu, tmp_path):
    no_gpu()
    res = cli('train', '--fp16', '--from_pretrained', 'tiny-causal', '--output_dir', tmp_path/'run')
    assert '--fp16: fp16 autocast with loss scaling is for GPUs' in error_line(res, 'train')
    assert res.stdout.splitlines()[0] == 'device: cpu (no GPU found)'

# ---- the start-up line

def test_device_line_with_a_gpu_in_use(on_gpu):
    on_gpu('L4')
    assert device_line() == 'device: cuda (NVIDIA L4, 22 GiB)'
    on_gpu('H100', count=8)
    assert device_line() == 'device: cuda (8 x NVIDIA H100 80GB HBM3, 80 GiB each)'

def test_device_line_without_a_gpu(no_gpu):
    no_gpu(attached=False)
    assert device_line() == 'device: cpu (no GPU found)'

def test_device_line_with_a_gpu_a_cpu_build_cannot_use(no_gpu, monkeypatch):
    no_gpu(attached=True)
    monkeypatch.setattr(torch.version, 'cuda', None)
    monkeypatch.setattr(torch.version, 'hip', None)
    assert device_line() == ('device: cpu — a GPU is attached but PyTorch cannot use it: this PyTorch is a CPU build '
                             '(torch.version.cuda is None); install a CUDA build (https://pytorch.org/get-started/locally/)')

def test_device_line_with_a_driver_too_old(no_gpu, monkeypatch):
    no_gpu(attached=True)
    monkeypatch.setattr(torch.version, 'cuda', '12.8')
    def init(): raise RuntimeError('The NVIDIA driver on your system is too old (found version 11040). Please update your GPU driver.\nmore')
    monkeypatch.setattr(torch.cuda, 'init', init)
    assert device_line() == ('device: cpu — a GPU is attached but PyTorch cannot use it: The NVIDIA driver on your system is too old '
                             '(found version 11040). Please update your GPU driver.')

def test_nvidia_attached_reads_the_driver_files_and_nvidia_smi(monkeypatch):
    monkeypatch.setattr(hardware.shutil, 'which', lambda name: None)
    monkeypatch.setattr(hardware.os.path, 'exists', lambda p: False)
    assert not nvidia_attached()
    monkeypatch.setattr(hardware.os.path, 'exists', lambda p: p == '/dev/nvidiactl')
    assert nvidia_attached()
    monkeypatch.setattr(hardware.os.path, 'exists', lambda p: False)
    monkeypatch.setattr(hardware.shutil, 'which', lambda name: '/usr/bin/nvidia-smi' if name == 'nvidia-smi' else None)
    assert nvidia_attached()

def test_serve_starts_with_the_device_line(no_gpu, monkeypatch, tmp_path, capsys):
    import uvicorn
    from distill_sbs.serve import serve_command
    no_gpu(attached=True)
    monkeypatch.setattr(torch.version, 'cuda', None)
    monkeypatch.setattr(torch.version, 'hip', None)
    monkeypatch.setattr(uvicorn, 'run', lambda *a, **kw: None)
    assert serve_command(['--model_dir', str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith('device: cpu — a GPU is attached but PyTorch cannot use it: this PyTorch is a CPU build') and lines[1].startswith('serving ')

def test_training_args_warns_when_fp16_is_asked_of_a_cpu(tmp_path):
    hw = pick_hardware(device='cpu')
    with pytest.warns(UserWarning, match='fp16 ignored: the hardware chose fp32'): args = training_args(str(tmp_path), hardware=hw, fp16=True)
    assert not args.fp16
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert not training_args(str(tmp_path), hardware=hw).fp16

def test_capping_onednn_below_bf16_takes_the_path_of_a_cpu_without_bf16_units():
    "`ONEDNN_MAX_CPU_ISA=AVX2` in a fresh process: the flags lose the bf16 units, and the fast settings keep fp32 matrix products exact."
    import os, subprocess, sys
    code = ('from distill_sbs.hardware import cpu_info, native_bf16, pick_hardware, CPU_BF16_FLAGS; h = pick_hardware(); '
            'print(sorted(cpu_info()[1] & CPU_BF16_FLAGS), native_bf16(), h.native_bf16, h.matmul_precision())')
    env = {k: v for k, v in os.environ.items() if k != 'CUDA_VISIBLE_DEVICES'} | {'ONEDNN_MAX_CPU_ISA': 'AVX2', 'CUDA_VISIBLE_DEVICES': ''}
    out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, check=True).stdout.split()
    assert out == ['[]', 'False', 'False', 'highest'], out
    if native_bf16('cpu'): assert hardware.cpu_info()[1] & hardware.CPU_BF16_FLAGS  # this process, uncapped, still sees its units
