"""What a chapter says a long run measured is what that run wrote. The test suite runs each chapter at its smallest, so
a number only a long run can show (an accuracy gap over seeds, a speed-up) comes from a benchmark, which writes it to
`benchmarks/results/NAME.md` with its command and the machine it ran on. A paragraph that cites such a file (a notebook's
markdown cell, or a paragraph of the README) may state only percentages, decimals, ratios and times that the file holds."""
import json, re
import pytest
from conftest import ROOT

RESULTS = ROOT/'benchmarks'/'results'
CITE = re.compile(r'benchmarks/results/([\w.-]+\.md)')
# what a measurement looks like in prose: 57.6%, 12.5%, 3.4, 2.1×, 291 s (integers alone are counts and chapter numbers)
CLAIM = re.compile(r'(?<![\w.])\d[\d,]*(?:\.\d+)?(?:%|×|x\b| s\b)|(?<![\w.,])\d[\d,]*\.\d+(?![\w.])')

def paragraphs() -> list[tuple[str, str]]:
    "(where, text) for every markdown cell of every notebook and every paragraph of the README."
    out = [(f'{nb.name} cell {c.get("id")}', ''.join(c['source'])) for nb in sorted((ROOT/'nbs').glob('*.ipynb'))
           for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'markdown']
    return out + [(f'README.md paragraph {i}', p) for i, p in enumerate((ROOT/'README.md').read_text().split('\n\n'))]

CITING = [(where, text) for where, text in paragraphs() if CITE.search(text)]

def claims(text:str) -> list[str]:
    "The measurements a paragraph states, as written, outside its code spans (flags such as `--lr 3e-3` are settings, not results)."
    return [m.group(0) for m in CLAIM.finditer(re.sub(r'`[^`]*`', ' ', text))]

def unsupported(text:str, outputs:str) -> list[str]:
    "The measurements `text` states that `outputs` does not hold."
    held = claims(outputs)
    return [c for c in claims(text) if c not in held and c.replace(',', '') not in outputs]

def test_claims_are_found_in_prose_and_checked():
    "The pattern finds what prose quotes, and not what it does not; a number the output lacks is caught."
    text = '57.6% and 58.6% (±4.1 points), 2.1× faster, 291 s in all; `--lr 3e-3`; chapter 2, 18 cells, 1,800 rows'
    assert claims(text) == ['57.6%', '58.6%', '4.1', '2.1×', '291 s']
    output = '| distilled | 57.6% ± 4.1 |\n| standard | 58.6% ± 3.0 |\n2.1× as long; 291 s in all'
    assert unsupported(text, output) == []
    assert unsupported(text.replace('58.6%', '58.7%'), output) == ['58.7%']

def test_some_chapters_cite_their_benchmarks():
    cited = {f for _, text in CITING for f in CITE.findall(text)}
    assert {'sweep_experiment.md', 'kd_experiment.md'} <= cited, cited

@pytest.mark.parametrize('where, text', CITING, ids=[w for w, _ in CITING])
def test_every_number_a_paragraph_cites_is_in_its_benchmarks_output(where, text):
    files = sorted(set(CITE.findall(text)))
    missing = [f for f in files if not (RESULTS/f).exists()]
    assert not missing, f'{where} cites {missing}, which no benchmark has written to {RESULTS}'
    outputs = '\n'.join((RESULTS/f).read_text() for f in files)
    for f in files:  # each names what wrote it and where it ran
        head = (RESULTS/f).read_text().split('\n\n')[:3]
        assert head[1].startswith('`python benchmarks/') and 'bf16 multiplied natively' in head[2], f'{f}: no command or machine line'
    absent = unsupported(text, outputs)
    assert not absent, f'{where} states {absent}, which {", ".join(files)} does not hold'
