"""Serving under load: many concurrent clients against `distill-sbs serve`, batched versus one instance at a time.

Starts the real server in a subprocess on loopback with the same model, once per way of serving: one `generate` per
instance (`DSS_BATCH_ACROSS_REQUESTS=0`) as the tutorial's container did, and chapter 6's batching (instances of
concurrent requests gathered into one `generate`). Both run in the server's default weight type (`--dtype auto`:
bfloat16 where the hardware multiplies it natively); where that is not float32, the tutorial as written (float32, one
at a time) runs too. Each time `--clients` threads send one-instance requests back to back for `--seconds`; it prints
requests/s, p50/p99 latency, errors, texts per `generate` (from the health route) and the speed-ups.

The model has random weights (speed does not depend on them), so every answer is forced to `--tokens` tokens
(`DSS_MIN_NEW_TOKENS`): every way does the same work.

    python benchmarks/serve_load.py                         # flan-t5-small config, 16 clients, 20 s each
    python benchmarks/serve_load.py --dtype float32         # batching alone, in full precision
    python benchmarks/serve_load.py --config flan-t5-base --clients 64   # on a GPU
"""
import argparse, http.client, json, os, subprocess, sys, tempfile, time, urllib.parse
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import in_threads
from distill_sbs.data import load_data
from distill_sbs.hardware import cpu_info, native_bf16
from distill_sbs.serve import free_port, wait_for

SHARED = Path(__file__).resolve().parents[2]/'shared'

def make_model(config, out):
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer
    if (SHARED/'models').is_dir():
        torch.manual_seed(0)
        AutoModelForSeq2SeqLM.from_config(AutoConfig.from_pretrained(SHARED/'models'/f'{config}-config')).save_pretrained(out)
        AutoTokenizer.from_pretrained(SHARED/'models'/'t5-tokenizer').save_pretrained(out)
        return f'{config} config (random weights), T5 tokenizer'
    from distill_sbs.students import tiny_student
    m, t = tiny_student(); m.save_pretrained(out); t.save_pretrained(out)
    return 'tiny student (no ../shared here)'

def load(url, questions, clients, seconds):
    "`clients` threads, each sending one-instance requests back to back on its own keep-alive connection."
    lat, errors, stop, u = [], [0], time.time() + seconds, urllib.parse.urlsplit(url)
    def client(k):  # the standard library's http.client: the lightest client, as the load shares the server's CPU
        conn, i = http.client.HTTPConnection(u.hostname, u.port, timeout=120), k
        while time.time() < stop:
            t0 = time.time()
            conn.request('POST', u.path, json.dumps({'instances': [questions[i % len(questions)]]}), {'content-type': 'application/json'})
            r = conn.getresponse(); body = r.read()
            if r.status == 200 and len(json.loads(body)['predictions']) == 1: lat.append(time.time() - t0)
            else: errors[0] += 1
            i += clients
        conn.close()
    took = in_threads(client, clients)
    lat.sort()
    return len(lat) / took, lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], errors[0], len(lat)

def run_server(model_dir, batched, tokens, dtype):
    port = free_port()
    env = {**os.environ, 'AIP_HTTP_PORT': str(port), 'AIP_STORAGE_URI': str(model_dir), 'DSS_MAX_NEW_TOKENS': str(tokens),
           'DSS_MIN_NEW_TOKENS': str(tokens), 'DSS_BATCH_ACROSS_REQUESTS': '1' if batched else '0', 'DSS_DTYPE': dtype}
    proc = subprocess.Popen(['distill-sbs', 'serve', '--host', '127.0.0.1'], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(f'http://127.0.0.1:{port}/health', proc=proc)
    return proc, f'http://127.0.0.1:{port}'

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default='flan-t5-small'); p.add_argument('--clients', type=int, default=16)
    p.add_argument('--seconds', type=float, default=20); p.add_argument('--tokens', type=int, default=8)
    p.add_argument('--dtype', default='auto', help="the server's --dtype: auto, float32 or bfloat16")
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    what = make_model(a.config, tmp)
    questions = list(load_data('cqa', data_dir=SHARED/'data')['test']['input']) if (SHARED/'data'/'cqa').is_dir() else list(load_data('arith')['test']['input'])
    print(f'{what}; {a.clients} clients, one instance a request, {a.seconds:.0f} s each, {a.tokens} tokens an answer')
    print(f'{cpu_info()[0]}, {os.cpu_count()} cores, bf16 units: {"yes" if native_bf16() else "no"}' + (' (GPU present)' if Path('/dev/nvidia0').exists() else ''))
    def measure(name, batched, dtype):
        proc, url = run_server(tmp, batched, a.tokens, dtype)
        try:
            rps, p50, p99, errors, n = load(url + '/predict', questions, a.clients, a.seconds)
            health = wait_for(url + '/health')
        finally: proc.terminate(); proc.wait(30)
        name = f'{name} ({health["dtype"]})'
        print(f'{name:48} {rps:6.1f} requests/s  p50 {p50*1000:6.0f} ms  p99 {p99*1000:6.0f} ms  errors {errors}  ({n} answered,'
              f' {health["texts"] / health["generates"]:.1f} a generate)', end='', flush=True)
        return rps, health['dtype']
    one, dtype = measure('one instance at a time', False, a.dtype); print()
    if dtype != 'float32': tutorial, _ = measure('the tutorial as written: one at a time', False, 'float32'); print()
    batched, _ = measure('batched across requests (serve)', True, a.dtype)
    print(f'  speed-up {batched / one:.1f}x from batching' + (f', {batched / tutorial:.1f}x over the tutorial' if dtype != 'float32' else ''))

if __name__ == '__main__': main()
