"""Where a benchmark leaves what it measured: `benchmarks/results/NAME.md`, headed by the command that wrote it and the
machine it ran on, then its tables. A chapter that quotes a benchmark cites that file; `tests/test_claims.py` checks that
every percentage, decimal and time in the citing paragraph is in it, so prose and measurement cannot drift apart."""
import os, sys, time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent/'results'

def machine() -> str:
    "This machine as a benchmark names it: the CPU, its cores, and whether it multiplies bf16 natively (which changes the numbers)."
    from distill_sbs.hardware import cpu_info, native_bf16
    return f"{cpu_info()[0]}, {os.cpu_count()} cores, bf16 multiplied natively: {'yes' if native_bf16() else 'no'}"

def in_threads(work, n:int) -> float:
    "Run `work(k)` for k in 0..n-1, each in its own thread, all at once: the seconds until the last one finished (load benchmarks' clients)."
    import threading
    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    t0 = time.time()
    for t in threads: t.start()
    for t in threads: t.join()
    return time.time() - t0

def write_result(name:str, title:str, body:str) -> Path:
    "Write `benchmarks/results/{name}.md`: `title`, the command line and the machine, then `body` (markdown)."
    RESULTS.mkdir(exist_ok=True)
    command = ' '.join(['python', 'benchmarks/' + Path(sys.argv[0]).name, *sys.argv[1:]])
    path = RESULTS/f'{name}.md'
    path.write_text(f"# {title}\n\n`{command}`\n\non {machine()}, {time.strftime('%Y-%m-%d')}.\n\n{body.strip()}\n")
    print(f'wrote {path}')
    return path
