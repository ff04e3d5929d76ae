"""Teacher requests per second: N in flight (chapter 1d's `ask`) against one at a time, in one run.

A teacher behind an API spends nearly all of a request waiting (chapter 1d). This runs the same kind of requests through the
real `openai` SDK against `LoopbackLLM`, a real HTTP server on 127.0.0.1 whose every answer takes `--latency`
seconds (a fixed stand-in for a remote model), first one at a time (how the tutorial called PaLM, in a loop), then
with 16 (and more) in flight. Each way starts from an empty cache, so every request is a real call.

    python benchmarks/teacher_throughput.py                 # 0.2 s latency
    python benchmarks/teacher_throughput.py --latency 0.5 --requests 640
"""
import argparse, os, tempfile, time
from pathlib import Path
from distill_sbs.data import load_data
from distill_sbs.prompts import PROMPTS
from distill_sbs.backends import OpenAIChat
from distill_sbs.loopback import LoopbackLLM
from distill_sbs.asking import TeacherCache, ask, request_key
from distill_sbs.hardware import cpu_info, native_bf16

def run(llm, questions, in_flight, db):
    params = dict(temperature=0., max_tokens=256, n=1, stop=PROMPTS['arith'].stop)
    backend = OpenAIChat('stand-in', base_url=llm.openai_url)
    reqs = {request_key(backend.name, backend.model, m, params): m for m in (PROMPTS['arith'].messages(q) for q in questions)}
    n_log = len(llm.log)
    rep = ask(backend, reqs, params, TeacherCache(db), in_flight=in_flight, progress=False)
    assert rep.answered == len(reqs) and not rep.failed and len(llm.log) - n_log == len(reqs)
    return len(reqs) / rep.seconds, rep.seconds, len(reqs)

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--latency', type=float, default=0.2, help='seconds the server takes per request')
    p.add_argument('--requests', type=int, default=320, help='requests for each in-flight setting (one at a time: a tenth, at least 20)')
    p.add_argument('--in_flight', type=int, nargs='+', default=[16, 64])
    a = p.parse_args()
    data = load_data('arith', n_train=4000, n_test=10)
    questions = list(dict.fromkeys(data['train']['input']))
    tmp = Path(tempfile.mkdtemp())
    print(f'loopback server, {a.latency} s a request, openai SDK; {cpu_info()[0]}, {os.cpu_count()} cores, bf16 units: {"yes" if native_bf16() else "no"}')
    with LoopbackLLM(latency=a.latency) as llm:
        n_seq = max(20, a.requests // 10)
        base, secs, n = run(llm, questions[:n_seq], 1, tmp/'seq.sqlite')
        print(f'{"one at a time (the tutorial)":32} {base:7.1f} requests/s  ({n} requests, {secs:5.1f} s)')
        start = n_seq
        for k in a.in_flight:
            qs = questions[start:start + a.requests]; start += a.requests
            rate, secs, n = run(llm, qs, k, tmp/f'par{k}.sqlite')
            print(f'{f"{k} in flight (ask)":32} {rate:7.1f} requests/s  ({n} requests, {secs:5.1f} s)  speed-up {rate / base:5.1f}x'
                  f'  (ideal {k}x)')

if __name__ == '__main__': main()
