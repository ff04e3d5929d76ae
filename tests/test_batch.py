"""Chapter 1d's batch path against the loopback stand-in's three batch APIs (OpenAI, Anthropic, Gemini) through the
vendors' own SDKs, and `distill-sbs teach --batch` as a real subprocess killed with SIGKILL after it submitted."""
import json, os, signal, sqlite3, subprocess, time
import pytest
from conftest import cli, error_line, ok, refused, run_cli, teach_args
from distill_sbs.asking import TeacherCache, ask, request_key
from distill_sbs.backends import Anthropic, Gemini, OpenAIChat
from distill_sbs.batch import BatchStore, ask_batch
from distill_sbs.data import load_data
from distill_sbs.loopback import LoopbackLLM, think_aloud
from distill_sbs.prompts import PROMPTS
from distill_sbs.teacher import cut_trace, teach, trace_length

PARAMS = dict(temperature=0., max_tokens=256, n=1, stop=PROMPTS['arith'].stop)
ROWS = load_data('arith', n_train=20, n_test=40)['test']

def keyed(backend):
    return {request_key(backend.name, backend.model, m, PARAMS): m for m in map(PROMPTS['arith'].messages, ROWS['input'])}

def creates(llm, vendor=None): return [e for e in llm.batch_log if e['op'] == 'create' and vendor in (None, e['vendor'])]

def accounted(rep): return rep.answered + rep.cached + len(rep.failed) + rep.pending + rep.not_asked == rep.requests

def batch_rows(db):
    con = sqlite3.connect(f'file:{db}?mode=ro', uri=True)
    try: return con.execute('SELECT tag, id, state, requests FROM batches ORDER BY created').fetchall()
    except sqlite3.OperationalError: return []  # not created yet
    finally: con.close()

def test_sigkill_after_submitting_then_rerun_resubmits_nothing(tmp_path):
    "Killed while its batches run; the rerun polls the batches it wrote down, sends none again, and every row is accounted for."
    out, db = tmp_path/'out', tmp_path/'out'/'teacher_cache.sqlite'
    args = teach_args(None, out, '--n_train', '60', '--n_test', '20', '--batch', '--batch_max_lines', '25', '--poll_every', '0.05')
    with LoopbackLLM(batch_polls=None) as llm:  # the batches stay in progress until the test lets them end
        args[args.index('--base_url') + 1] = llm.openai_url
        proc = subprocess.Popen(['distill-sbs', *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while not any(e['op'] == 'poll' for e in llm.batch_log):  # every batch is sent before the first look at one
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, 'the run never got to polling'
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL); proc.wait()
        sent = creates(llm)
        rows = batch_rows(db)
        assert len(sent) == len(rows) == 4 and all(r[1] and r[2] == 'submitted' for r in rows)  # 80 requests, 25 a batch
        llm.batch_polls = 0  # the day passes
        res = ok(run_cli(*args))
        assert creates(llm) == sent, 'a batch was sent again'
        report = json.loads((out/'teacher_report.json').read_text())['ask']
        assert report['answered'] == report['requests'] == 80 and report['pending'] == report['cached'] == 0 and report['batches'] == 0
    assert {r[2] for r in batch_rows(db)} == {'collected'}
    with LoopbackLLM() as llm:  # the same rows asked one at a time: the same data
        ok(run_cli(*teach_args(llm.openai_url, tmp_path/'sync', '--n_train', '60', '--n_test', '20')))
    for split in ('train', 'valid', 'test'):
        assert (out/f'{split}.jsonl').read_text() == (tmp_path/'sync'/f'{split}.jsonl').read_text()

def test_failed_and_expired_lines_and_only_those_are_sent_again(tmp_path):
    "5% of the lines fail in one batch and another batch expires half done: the next batch carries exactly those lines."
    gpt_lines = {}
    fault = lambda batch, line, key: 500 if batch == 1 and line in (3, 13) else None
    with LoopbackLLM(batch_fault=fault, expire_batches={2}) as llm:
        gpt = OpenAIChat('stand-in', base_url=llm.openai_url)
        reqs, cache = keyed(gpt), TeacherCache(tmp_path/'c.sqlite')
        rep = ask_batch(gpt, reqs, PARAMS, cache, poll_every=0.01, batch_max_lines=20, progress=False)
        sizes = [e['lines'] for e in creates(llm)]
    sent = [list(json.loads(r[3])) for r in batch_rows(tmp_path/'c.sqlite')]
    assert sizes == [20, 20, 12]
    assert set(sent[2]) == {sent[0][2], sent[0][12], *sent[1][10:]}
    assert rep.answered == 40 and not rep.failed and accounted(rep)
    with LoopbackLLM() as llm:
        gpt = OpenAIChat('stand-in', base_url=llm.openai_url)
        ask(gpt, reqs, PARAMS, TeacherCache(tmp_path/'s.sqlite'), progress=False)
    assert [cache.get(k) for k in reqs] == [TeacherCache(tmp_path/'s.sqlite').get(k) for k in reqs]

def test_resubmit_zero_leaves_failures_to_the_next_run_and_retry_sync_asks_them_one_by_one(tmp_path):
    fault = lambda batch, line, key: 503 if line <= 4 else None
    with LoopbackLLM(batch_fault=fault) as llm:
        gpt = OpenAIChat('stand-in', base_url=llm.openai_url)
        reqs = keyed(gpt)
        rep = ask_batch(gpt, reqs, PARAMS, TeacherCache(tmp_path/'a.sqlite'), poll_every=0.01, resubmit=0, progress=False)
        assert (rep.answered, len(rep.failed), len(creates(llm))) == (36, 4, 1) and accounted(rep)
        assert all('503' in why for why in rep.failed.values())
        n_sync = sum(1 for e in llm.log if e.get('batch') is None)
        rep = ask_batch(gpt, reqs, PARAMS, TeacherCache(tmp_path/'b.sqlite'), poll_every=0.01, retry_sync=True, progress=False)
        assert (rep.answered, len(rep.failed), len(creates(llm))) == (40, 0, 2)

def test_a_refused_line_is_not_sent_again(tmp_path):
    "A line the vendor refuses as a bad request (HTTP 400) is failed and refused, not put into another batch."
    with LoopbackLLM(batch_fault=lambda batch, line, key: 400 if line == 1 else None) as llm:
        gpt = OpenAIChat('stand-in', base_url=llm.openai_url)
        rep = ask_batch(gpt, keyed(gpt), PARAMS, TeacherCache(tmp_path/'c.sqlite'), poll_every=0.01, progress=False)
        assert (rep.answered, len(rep.failed), len(rep.refused), len(creates(llm))) == (39, 1, 1, 1)

@pytest.mark.parametrize('make', [lambda llm: Anthropic('stand-in', base_url=llm.anthropic_url),
                                  lambda llm: Gemini('stand-in', base_url=llm.gemini_url)], ids=['anthropic', 'gemini'])
def test_anthropic_and_gemini_batches_match_their_synchronous_answers(tmp_path, make, monkeypatch):
    monkeypatch.setenv('GEMINI_API_KEY', 'not-a-real-key')
    fault = lambda batch, line, key: None if batch > 1 else 500 if line == 2 else 'expired' if line == 5 else None
    with LoopbackLLM(batch_fault=fault) as llm:
        teacher = make(llm)
        reqs = keyed(teacher)
        rep = ask_batch(teacher, reqs, PARAMS, TeacherCache(tmp_path/'b.sqlite'), poll_every=0.01, progress=False)
        ask(teacher, reqs, PARAMS, TeacherCache(tmp_path/'s.sqlite'), progress=False)
        assert rep.answered == 40 and accounted(rep) and [e['lines'] for e in creates(llm)] == [40, 2]
    assert [TeacherCache(tmp_path/'b.sqlite').get(k).texts for k in reqs] == [TeacherCache(tmp_path/'s.sqlite').get(k).texts for k in reqs]

def test_result_lines_for_unknown_ids_and_malformed_lines_are_noted_and_nothing_is_lost(tmp_path):
    fault = lambda batch, line, key: None if batch > 1 else 'unknown_id' if line == 1 else 'malformed' if line == 2 else None
    with LoopbackLLM(batch_fault=fault) as llm:
        gpt = OpenAIChat('stand-in', base_url=llm.openai_url)
        rep = ask_batch(gpt, keyed(gpt), PARAMS, TeacherCache(tmp_path/'c.sqlite'), poll_every=0.01, progress=False)
    assert rep.answered == 40 and accounted(rep)  # the malformed line's request went into the next batch
    assert sum('which no request of the batch had' in n for n in rep.notes) == 1 and sum('not a result line' in n for n in rep.notes) == 1

def test_an_unknown_batch_id_stops_with_one_line_and_keeps_the_batch(tmp_path):
    out = tmp_path/'out'
    with LoopbackLLM(batch_polls=None) as llm:
        args = teach_args(llm.openai_url, out, '--n_train', '20', '--n_test', '5', '--batch', '--no_wait')
        res = ok(cli(*args))
        assert 'pending in a batch' in res.stdout and not (out/'train.jsonl').exists() and (out/'teacher_report.json').exists()
        again = res.stderr.split('with:')[1].split()
        assert again[0] == 'distill-sbs' and again[1:] == [str(a) for a in args if a != '--no_wait']
    with LoopbackLLM() as other:  # another server (another key, another base_url): it never saw that batch
        args[args.index('--base_url') + 1] = other.openai_url
        line = error_line(cli(*args), 'teach')
        assert 'is not known to the openai server' in line and '--forget_batches' in line
        assert len(batch_rows(out/'teacher_cache.sqlite')) == 1 and not creates(other)
        ok(cli(*args[:-1], '--forget_batches', '--poll_every', '0.01'))  # sent again, collected
        assert len(creates(other)) == 1 and (out/'train.jsonl').exists()

def test_bad_batch_flags_get_one_line(tmp_path):
    with LoopbackLLM() as llm:
        assert 'openai takes 1 to 50000 requests a batch' in error_line(cli(*teach_args(llm.openai_url, tmp_path, '--batch', '--batch_max_lines', '60000')), 'teach')
        assert 'option of the batch path: add --batch' in error_line(cli(*teach_args(llm.openai_url, tmp_path, '--no_wait')), 'teach')
    assert 'the local backend has no batch path' in error_line(cli('teach', '--backend', 'local', '--model', 'x', '--output_dir', str(tmp_path), '--batch'), 'teach')
    assert len(TeacherCache(tmp_path/'teacher_cache.sqlite')) == 0

def test_a_request_over_the_vendor_byte_limit_is_refused_before_anything_is_sent(tmp_path, monkeypatch):
    from distill_sbs.batch import AnthropicBatches
    monkeypatch.setattr(AnthropicBatches, 'max_bytes', 600)
    with LoopbackLLM() as llm:
        teacher = Anthropic('stand-in', base_url=llm.anthropic_url)
        with pytest.raises(Exception, match=r'bytes, over the anthropic limit of 600 a batch'):
            ask_batch(teacher, keyed(teacher), PARAMS, TeacherCache(tmp_path/'c.sqlite'), progress=False)
        assert not creates(llm)

def test_batch_cost_is_half_the_synchronous_cost_of_the_same_tokens(tmp_path):
    data = load_data('arith', n_train=40, n_test=10)
    with LoopbackLLM() as llm:
        gpt = OpenAIChat('stand-in', base_url=llm.openai_url)
        _, b = teach(data, gpt, PROMPTS['arith'], tmp_path/'b.sqlite', batch=True, poll_every=0.01, price_in=1.25, price_out=10., progress=False)
        _, s = teach(data, gpt, PROMPTS['arith'], tmp_path/'s.sqlite', price_in=1.25, price_out=10., progress=False)
    assert (b.ask.prompt_tokens, b.ask.completion_tokens) == (s.ask.prompt_tokens, s.ask.completion_tokens)
    assert b.sync_cost == pytest.approx(s.cost) and b.cost == pytest.approx(s.cost / 2)
    assert 'at 50% off; asked one at a time' in str(b)

def test_reasoning_traces_become_rationales_and_are_billed(tmp_path, monkeypatch):
    monkeypatch.setenv('GEMINI_API_KEY', 'not-a-real-key')
    data = load_data('arith', n_train=20, n_test=5)
    with LoopbackLLM(reasoning=think_aloud) as llm:
        for teacher in (OpenAIChat('stand-in', base_url=llm.openai_url), OpenAIChat('stand-in', base_url=llm.openai_url, api='responses'),
                        Gemini('stand-in', base_url=llm.gemini_url), Anthropic('stand-in', base_url=llm.anthropic_url)):
            plain, _ = teach(data, teacher, PROMPTS['arith'], tmp_path/f'{teacher.name}.sqlite', splits=['test'], progress=False)
            taught, rep = teach(data, teacher, PROMPTS['arith'], tmp_path/f'{teacher.name}.sqlite', splits=['test'], rationale_from='both',
                                trace_tokens=40, progress=False)
            t = rep.splits['test']
            assert t.traces == 5 and t.no_trace == 0, (teacher.name, str(rep))
            traces = {l['id']: l['reasoning'] for l in taught.reasoning['test']}
            for row, was in zip(taught['test'], plain['test']):
                short = cut_trace(traces[row['id']], 40)
                assert trace_length(short) <= 40 or short.count('.') <= 1
                assert row['rationale'] == f"{short}\n{was['rationale']}" and row['teacher_label'] == was['teacher_label']
            assert rep.ask.completion_tokens > 0
    assert rep.ask.reasoning_tokens == 0  # Anthropic counts thinking inside output_tokens and says no more

def test_cut_trace_keeps_the_opening_and_the_last_sentence():
    trace = 'First I read it. Ana has 2. She buys 1, so 3. Wait, check: 2 + 1 = 3. She loses 1, so 2. So the total is 2.'
    assert cut_trace(trace, None) == trace and cut_trace(trace, 1000) == trace
    short = cut_trace(trace, 20)
    assert short == 'First I read it. Ana has 2. So the total is 2.' and trace_length(short) <= 20
