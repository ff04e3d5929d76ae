"""The OpenAI routes under load, against `/predict` on the same model: many concurrent clients against `distill-sbs serve`.

One server per way of asking, each with the same model, settings and questions: Vertex AI's `/predict` (one
instance a request), then `/v1/chat/completions` streamed (server-sent events, a piece per token) greedy and
sampled (temperature 0.8, top_p 0.95, a seed per request), and whole (not streamed). `--clients` threads send
requests back to back for `--seconds` each, on keep-alive connections of the standard library's `http.client` (the
lightest client: the load shares the server's CPU). A streamed request counts only when it ends with `[DONE]` after
the right number of tokens. It prints requests/s, p50/p99 latency, the time to the first token, errors, texts per
`generate`, the server's peak memory, and each way's throughput as a ratio of `/predict`'s.

Random weights (speed does not depend on them) answer nonsense that could end at any token, so every answer is
forced to `--tokens` tokens (`DSS_MIN_NEW_TOKENS`, and `max_tokens` on the OpenAI routes): every way does the same work.

    python benchmarks/serve_openai.py                       # flan-t5-small config (random weights), 16 clients, 20 s each
    python benchmarks/serve_openai.py --model smollm2       # the real SmolLM2-135M-Instruct from ../shared, a causal student
"""
import argparse, http.client, json, os, subprocess, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import in_threads, machine, write_result
from distill_sbs.data import load_data
from distill_sbs.serve import free_port, wait_for

SHARED = Path(__file__).resolve().parents[2]/'shared'

def make_model(name, out):
    import torch
    if name == 'smollm2':
        from distill_sbs import data
        return Path(data.smollm2(shared=SHARED)), 'SmolLM2-135M-Instruct (pretrained, causal)'
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer
    torch.manual_seed(0)
    AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(SHARED/'models'/f'{name}-config')).save_pretrained(out)
    AutoTokenizer.from_pretrained(SHARED/'models'/'t5-tokenizer').save_pretrained(out)
    (out/'train_config.json').write_text(json.dumps({'model_type': 'task_prefix'}))
    return out, f'{name} config (random weights, seq2seq), T5 tokenizer'

def request(conn, path, body):
    "Send one request; (ok, seconds to the first token or None). A stream is read event by event until `[DONE]`."
    conn.request('POST', path, json.dumps(body), {'content-type': 'application/json'})
    r, t0, first = conn.getresponse(), time.time(), None
    if r.status != 200: r.read(); return False, None
    if not body.get('stream'):
        out = json.loads(r.read())
        n = len(out['predictions']) if 'predictions' in out else out['usage']['completion_tokens']
        return n == (1 if 'predictions' in out else body['max_tokens']), None
    done, tokens = False, None
    while line := r.readline():
        if not line.startswith(b'data: '): continue
        if line.strip() == b'data: [DONE]': done = True; continue
        event = json.loads(line[6:])
        if first is None and event['choices'] and event['choices'][0]['delta'].get('content'): first = time.time() - t0
        if event.get('usage'): tokens = event['usage']['completion_tokens']
    return done and tokens == body['max_tokens'], first

def load(url, path, make_body, clients, seconds):
    "`clients` threads, each sending requests back to back on its own keep-alive connection."
    lat, firsts, errors, stop, host, port = [], [], [0], time.time() + seconds, *url.removeprefix('http://').split(':')
    def client(k):
        conn, i = http.client.HTTPConnection(host, int(port), timeout=300), k
        while time.time() < stop:
            t0 = time.time()
            ok, first = request(conn, path, make_body(i))
            if ok: lat.append(time.time() - t0); firsts.append(first)
            else: errors[0] += 1
            i += clients
        conn.close()
    took = in_threads(client, clients)
    lat.sort(); firsts = sorted(f for f in firsts if f is not None)
    pct = lambda xs, q: xs[min(len(xs) - 1, int(len(xs) * q))] if xs else float('nan')
    return dict(rps=len(lat) / took, p50=pct(lat, .5), p99=pct(lat, .99), first=pct(firsts, .5), errors=errors[0], n=len(lat))

def peak_mib(pid) -> float:
    "The server's peak resident memory (VmHWM), MiB."
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmHWM'): return int(line.split()[1]) / 1024
    return float('nan')

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='flan-t5-small', help='a config in ../shared/models (random weights) or smollm2')
    p.add_argument('--clients', type=int, default=16); p.add_argument('--seconds', type=float, default=20)
    p.add_argument('--tokens', type=int, default=16); p.add_argument('--dtype', default='auto')
    a = p.parse_args()
    model_dir, what = make_model(a.model, Path(tempfile.mkdtemp()))
    questions = list(load_data('cqa', data_dir=SHARED/'data')['test']['input'])
    print(f'{what}; {a.clients} clients, one question a request, {a.seconds:.0f} s each, {a.tokens} tokens an answer\n{machine()}', flush=True)
    chat = lambda i, **kw: {'model': 'student', 'messages': [{'role': 'user', 'content': questions[i % len(questions)]}], 'max_tokens': a.tokens, **kw}
    ways = [('/predict (Vertex AI)', '/predict', lambda i: {'instances': [questions[i % len(questions)]]}),
            ('chat, streamed, greedy', '/v1/chat/completions', lambda i: chat(i, temperature=0, stream=True, stream_options={'include_usage': True})),
            ('chat, streamed, sampled', '/v1/chat/completions', lambda i: chat(i, temperature=0.8, top_p=0.95, seed=i, stream=True, stream_options={'include_usage': True})),
            ('chat, whole, greedy', '/v1/chat/completions', lambda i: chat(i, temperature=0))]
    rows = []
    for name, path, body in ways:
        port = free_port()
        env = {**os.environ, 'DSS_MAX_NEW_TOKENS': str(a.tokens), 'DSS_MIN_NEW_TOKENS': str(a.tokens), 'DSS_DTYPE': a.dtype}
        proc = subprocess.Popen(['distill-sbs', 'serve', '--model_dir', str(model_dir), '--port', str(port), '--model_name', 'student'],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f'http://127.0.0.1:{port}'
            wait_for(url + '/health', proc=proc)
            r = load(url, path, body, a.clients, a.seconds)
            health, r['peak'] = wait_for(url + '/health'), peak_mib(proc.pid)
        finally: proc.terminate(); proc.wait(30)
        r.update(name=name, dtype=health['dtype'], per_generate=health['texts'] / max(1, health['generates']))
        rows.append(r)
        print(f"{name:26} {r['rps']:6.2f} requests/s  p50 {r['p50']:.2f} s  p99 {r['p99']:.2f} s  first token {r['first']:.2f} s  "
              f"errors {r['errors']}  ({r['n']} answered, {r['per_generate']:.1f} a generate, peak {r['peak']:.0f} MiB)", flush=True)
    base = rows[0]['rps']
    table = ['| route | requests/s | × /predict | p50 | p99 | first token (p50) | errors | texts a generate | server peak |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        first = f"{r['first']:.2f} s" if r['first'] == r['first'] else '—'
        table.append(f"| {r['name']} | {r['rps']:.2f} | {r['rps'] / base:.2f}× | {r['p50']:.2f} s | {r['p99']:.2f} s | {first} | {r['errors']} | "
                     f"{r['per_generate']:.1f} | {r['peak']:.0f} MiB |")
    print('\n'.join(table))
    write_result(f'serve_openai_{a.model}', 'The OpenAI routes under load, against /predict on the same model',
                 f"{what}, {rows[0]['dtype']}; {a.clients} concurrent clients, one question a request, {a.seconds:.0f} s a route, every answer "
                 f"{a.tokens} tokens.\n\n" + '\n'.join(table))

if __name__ == '__main__': main()
