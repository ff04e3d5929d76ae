"""Does a distilled student answer the same after `distill-sbs export --format gguf`? Its answers before and after.

Takes trained SmolLM2-135M-Instruct students (by default the CommonsenseQA runs of `benchmarks/smollm2_sweep.py`, seed
0, all the data: standard finetuning, distilling step-by-step, rationale first), writes each as GGUF in f32, f16 and
q8_0, and answers the run's test questions three ways: the student as trained (float32, transformers), the file read
back by transformers' GGUF loader, and the file run by the real llama.cpp (llama-cpp-python, in process, greedy, no
repeat penalty). It counts the answers (what the student's recipe reads from its text) and the whole texts that agree
with the student's own, and each way's accuracy; and times llama.cpp's answers against the student's in transformers.

    python benchmarks/smollm2_sweep.py --datasets cqa --seeds 0       # first, if the runs are not there
    python benchmarks/export_quality.py                               # about 10 minutes on 2 cores
"""
import argparse, json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import write_result

RUNS = 'runs/smollm2_sweep/cqa/smollm2-135m-instruct/{}/1/seed0'

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--runs', default=','.join(RUNS.format(m) for m in ('standard', 'distilled', 'cot')))
    p.add_argument('--dtypes', default='f32,f16,q8_0'); p.add_argument('--n', type=int, default=100, help='test questions')
    a = p.parse_args()
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM
    from distill_sbs.data import load_data
    from distill_sbs.evaluation import answer_correct
    from distill_sbs.export import write_gguf
    from distill_sbs.inference import Student, load_run, run_config
    torch.manual_seed(0)
    rows, out = [], Path(tempfile.mkdtemp())
    for run in a.runs.split(','):
        cfg = run_config(run)
        test = load_data(cfg['dataset'], data_dir=cfg['data_dir'], n_train=cfg['n_train'], n_test=cfg['n_test'])['test']
        qs, labels = list(test['input'][:a.n]), list(test['label'][:a.n])
        student = load_run(run, 'float32', 'cpu')
        t0 = time.time()
        own = student.generations(qs, 'predict', student.answer_tokens, 16)
        own_s = time.time() - t0
        acc = lambda answers: sum(answer_correct(cfg['dataset'], x, y) for x, y in zip(answers, labels)) / len(labels)
        name = f"{cfg['model_type']}"
        rows.append((name, 'as trained (transformers, float32)', len(qs), len(qs), acc(own.answers), own_s))
        print(f'{run}: {len(qs)} questions, accuracy {acc(own.answers):.1%}, {own_s:.0f} s', flush=True)
        eot = student.tokenizer.convert_ids_to_tokens(student.kind.stop_ids(student.tokenizer)[0])
        prompts = [student.kind.prompt(student.tokenizer, student.recipe.ask(q), 'predict', student.model_type) for q in qs]
        for dtype in a.dtypes.split(','):
            path = write_gguf(student.model, student.tokenizer, out/f'{name}-{dtype}.gguf', dtype, eot_token=eot)
            back = Student(AutoModelForCausalLM.from_pretrained(out, gguf_file=path.name, dtype=torch.float32).eval(), student.tokenizer, student.model_type,
                           gen_max_len=student.gen_max_len)
            g = back.generations(qs, 'predict', student.answer_tokens, 16)
            del back
            same, texts = sum(x == y for x, y in zip(g.answers, own.answers)), sum(x == y for x, y in zip(g.texts, own.texts))
            rows.append((name, f'{dtype}, read back by transformers', same, texts, acc(g.answers), None))
            llm = Llama(model_path=str(path), n_ctx=2048, n_threads=2, verbose=False)
            t0 = time.time()
            said = [llm.create_completion(pr, max_tokens=student.answer_tokens, temperature=0, repeat_penalty=1.0)['choices'][0]['text'].strip() for pr in prompts]
            took = time.time() - t0
            del llm
            answers = [student.recipe.read(t) for t in said]
            same, texts = sum(x == y for x, y in zip(answers, own.answers)), sum(x == y for x, y in zip(said, own.texts))
            rows.append((name, f'{dtype}, run by llama.cpp', same, texts, acc(answers), took))
            print(f'  {dtype}: {rows[-2][2]} answers the same read back, {same} in llama.cpp ({took:.0f} s, {path.stat().st_size / 1e6:.0f} MB)', flush=True)
    table = ['| student | answered by | same answers | same texts | accuracy |', '|---|---|---|---|---|']
    n = min(a.n, len(qs))
    table += [f"| {s} | {how} | {same} of {n} | {texts} of {n} | {acc_:.1%} |" for s, how, same, texts, acc_, _ in rows]
    print('\n'.join(table))
    write_result('export_quality', 'A distilled student before and after GGUF export',
                 f"SmolLM2-135M-Instruct students of `benchmarks/smollm2_sweep.py` (CommonsenseQA, all the data, seed 0), {n} test questions, "
                 "greedy; the same answers and texts are counted against the student as trained.\n\n" + '\n'.join(table))

if __name__ == '__main__': main()
