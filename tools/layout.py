"""The house in numbers: each module's lines and the library modules it imports, and how long the notebooks' export cells are.

    python tools/layout.py            # the module map and the cell counts
    python tools/layout.py --check    # and exit 1 if a module is over 500 lines, an import runs in a circle or
                                      # against the course order, or over 15% of export cells run over 30 lines
"""
import ast, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB, NBS = ROOT/'distill_sbs', ROOT/'nbs'
MAX_LINES, MAX_CELL, MAX_SHARE = 500, 30, 0.15

def notebooks():
    "(notebook, its module, its export cells' sources) in course order"
    for nb in sorted(NBS.glob('[0-9]*.ipynb')):
        cells = [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']
        m = next(re.search(r'#\|\s*default_exp\s+(\S+)', s).group(1) for s in cells if re.search(r'#\|\s*default_exp', s))
        yield nb.name, m, [s for s in cells if re.match(r'\s*#\|\s*export', s)]

def imports(path):
    "the `distill_sbs` modules a module imports"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:  # nbdev writes `from .data import ...`
            out |= {node.module.split('.')[0]} if node.module else {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('distill_sbs.'):
            out.add(node.module.split('.')[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split('.')[1] for a in node.names if a.name.startswith('distill_sbs.')}
    return out

def definitions(src):
    "how many top-level functions, classes and @patch-ed methods a cell defines"
    try: tree = ast.parse(src)
    except SyntaxError: return 0
    return sum(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in tree.body)

def code_lines(src):
    "a cell's lines, less its `#|` directives"
    return sum(1 for l in src.splitlines() if not l.lstrip().startswith('#|'))

def module_map() -> dict:
    "{module: (its lines, the library modules it imports)}, in course order"
    return {m: (len((LIB/f'{m}.py').read_text().splitlines()), sorted(imports(LIB/f'{m}.py') - {m})) for _, m, _ in notebooks()}

def main(check=False):
    course = list(notebooks())
    order = {m: i for i, (_, m, _) in enumerate(course)}
    problems = []
    print(f'{"module":<22}{"lines":>6}  imports (distill_sbs.*)')
    graph = {}
    for m, (n, used) in module_map().items():
        graph[m] = used
        print(f'{m:<22}{n:>6}  {", ".join(used) or "-"}')
        if n > MAX_LINES: problems.append(f'{m}.py has {n} lines (limit {MAX_LINES})')
        problems += [f'{m} imports {u}, which a later chapter teaches' for u in used if order.get(u, -1) > order[m]]
    def reach(m, seen=()):  # a circle: a module that reaches itself
        for u in graph.get(m, []):
            if u in seen: return seen + (u,)
            if (c := reach(u, seen + (u,))): return c
    problems += [f'import circle: {" -> ".join((m,) + c)}' for m in graph if (c := reach(m)) and c[-1] == m]
    experiments = [m for m in graph if m.endswith('experiment')]  # side by side: what they share lives in the chapters they build on
    problems += [f'{m} imports {u}: experiments do not build on each other' for m in experiments for u in graph[m] if u in experiments]
    cells = [(nb, s) for nb, _, ss in course for s in ss]
    long = [(nb, s) for nb, s in cells if code_lines(s) > MAX_CELL]
    multi = [(nb, s) for nb, s in cells if definitions(s) > 1]
    print(f'\n{len(course)} modules, {sum(len(v) for v in graph.values())} imports between them')
    print(f'export cells: {len(cells)}; over {MAX_CELL} lines: {len(long)} ({len(long)/len(cells):.0%}); '
          f'with two or more definitions: {len(multi)} ({len(multi)/len(cells):.0%})')
    per_nb = {}
    for nb, s in long: per_nb[nb] = per_nb.get(nb, 0) + 1
    if per_nb: print('over 30 lines by notebook: ' + ', '.join(f'{k} {v}' for k, v in per_nb.items()))
    if len(long) > MAX_SHARE*len(cells): problems.append(f'{len(long)/len(cells):.0%} of export cells run over {MAX_CELL} lines (limit {MAX_SHARE:.0%})')
    for p in problems: print('PROBLEM:', p)
    return 1 if check and problems else 0

if __name__ == '__main__': sys.exit(main('--check' in sys.argv))
