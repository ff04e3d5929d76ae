"""Oversized and hostile request bodies against `distill-sbs serve`: refused from the declared length, against reading them whole.

Starts the real server in a subprocess on loopback with the same tiny model, a fresh one for each body: with the
default body limit (`max_body_bytes`, 1.5 MB: refused from `Content-Length` before the body is read, or cut off at
the limit when it has none), and with the limit raised to 1 GB, which is what the server did before it had one (read
the whole body, then parse it, then refuse it for its 60,000 instances). The bodies: a 60 MB predict request
(60,000 instances of 1,000 characters) with its length, the same chunked (no length), and 200,000 `[` (a
`RecursionError` and a 500 before the depth guard; a 400 now, whatever the limit). For each it prints the status,
the time to the answer, and how much the server's peak resident memory grew (from /proc), then checks that the next
valid request is answered.

    python benchmarks/serve_faults.py
    python benchmarks/serve_faults.py --mb 200
"""
import argparse, json, os, subprocess, tempfile, time
from pathlib import Path
import httpx2 as httpx
from distill_sbs.hardware import cpu_info
from distill_sbs.students import tiny_student
from distill_sbs.serve import free_port, wait_for

def peak_rss_mb(pid) -> float:
    "The peak resident memory of process `pid`, in MB (VmHWM in /proc)."
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmHWM:'): return int(line.split()[1]) / 1024
    return float('nan')

def bodies(mb):
    big = json.dumps({'instances': ['x' * 1000] * (mb * 1000)}).encode()
    def chunked():
        for i in range(0, len(big), 1_000_000): yield big[i:i + 1_000_000]
    return [(f'{mb} MB with its length', lambda: big), (f'{mb} MB chunked, no length', chunked),
            ('200,000 nested [', lambda: b'[' * 200_000)]

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--mb', type=int, default=60, help='size of the oversized bodies')
    args = ap.parse_args()
    print(f'{cpu_info()[0]}, {os.cpu_count()} cores')
    model_dir = Path(tempfile.mkdtemp())/'student'
    m, t = tiny_student(); m.save_pretrained(model_dir); t.save_pretrained(model_dir)
    (model_dir/'train_config.json').write_text(json.dumps({'model_type': 'task_prefix'}))
    rows = {}
    for name, limit in [('limit 1.5 MB (default)', None), ('limit 1 GB (read it whole)', 1_000_000_000)]:
        for what, make in bodies(args.mb):
            port = free_port()
            cmd = ['distill-sbs', 'serve', '--model_dir', str(model_dir), '--port', str(port)] + (['--max_body_bytes', str(limit)] if limit else [])
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            url = f'http://127.0.0.1:{port}'
            try:
                wait_for(url + '/health', 200, proc=proc)
                before, body = peak_rss_mb(proc.pid), make()
                t0 = time.perf_counter()
                try: r = httpx.post(url + '/predict', content=body, headers={'content-type': 'application/json'}, timeout=120); status = r.status_code
                except httpx.TransportError as e: status = type(e).__name__
                took = time.perf_counter() - t0
                ok = httpx.post(url + '/predict', json={'instances': ['still there?']}, timeout=60).status_code
                rows[name, what] = (status, took, peak_rss_mb(proc.pid) - before, ok)
            finally:
                proc.terminate(); err = proc.communicate(timeout=30)[1]
            assert 'Traceback' not in err, err[-2000:]
    print(f"\n{'server':28} {'body':28} {'status':>6} {'seconds':>8} {'grew MB':>8} {'next':>5}")
    for (name, what), (status, took, grew, ok) in rows.items():
        print(f'{name:28} {what:28} {status!s:>6} {took:8.3f} {grew:8.0f} {ok:>5}')
    for _, what in list(rows)[:2]:
        a, b = rows['limit 1.5 MB (default)', what], rows['limit 1 GB (read it whole)', what]
        print(f'{what}: refused {b[1] / a[1]:.0f}x sooner, the server grew {a[2]:.0f} MB instead of {b[2]:.0f} MB')

if __name__ == '__main__': main()
