"""Chapter 1 against real servers: a loopback server speaking the OpenAI and Gemini APIs, started here, and tiny local
`transformers` teachers. Kill-and-resume uses a real `distill-sbs teach` subprocess killed with SIGKILL."""
import json, os, signal, sqlite3, subprocess, time
import pytest
from hypothesis import given, strategies as st
from conftest import cli, error_line, fuzz, json_values, ok, refused, run_cli, teach_args
from distill_sbs.data import load_data
from distill_sbs.prompts import PROMPTS
from distill_sbs.backends import Gemini, LocalModel, OpenAIChat, Reply, Retryable, reply_problem
from distill_sbs.loopback import MALFORMED, LoopbackLLM
from distill_sbs.teacher import teach

SECRET = 'sk-test-secret-0123456789'

def stored_questions(db):
    "The questions whose answers a cache file holds (read while its writer may be dead)."
    con = sqlite3.connect(f'file:{db}?mode=ro', uri=True)
    try: return {json.loads(r)[-1]['content'] for (r,) in con.execute('SELECT request FROM answers')}
    except sqlite3.OperationalError as e:  # the file exists a moment before its table does
        if 'no such table' in str(e): return set()
        raise
    finally: con.close()

@pytest.mark.slow
def test_kill_and_resume(tmp_path):
    "SIGKILL halfway through a few hundred requests; the restart asks only for what was not stored, and finishes."
    out, db = tmp_path/'out', tmp_path/'out'/'teacher_cache.sqlite'
    with LoopbackLLM(latency=0.1) as llm:
        args = ['distill-sbs', *teach_args(llm.openai_url, out, '--n_train', '340', '--n_test', '1', '--splits', 'train', '--in_flight', '4')]
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, 'OPENAI_API_KEY': SECRET})
        deadline = time.time() + 240
        while not (db.exists() and len(stored_questions(db)) >= 80):
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, 'the run never got going'
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL); proc.wait()
        before, n_log = stored_questions(db), len(llm.log)
        train = load_data('arith', n_train=340, n_test=1)['train']
        assert 80 <= len(before) < len(set(train['input'])), 'killed midway'
        res = ok(run_cli(*teach_args(llm.openai_url, out, '--n_train', '340', '--n_test', '1', '--splits', 'train', '--in_flight', '4'),
                         env={'OPENAI_API_KEY': SECRET}))  # the program again, as a user would rerun it
        asked_again = [e['question'] for e in llm.log[n_log:] if e['question'] in before]
        assert asked_again == [], f'{len(asked_again)} stored answers were asked for again'
        asked = [e['question'] for e in llm.log]
        assert set(asked) == {f'Q: {x}' for x in train['input']}
        assert len(asked) - len(set(asked)) <= 4, 'only the requests in flight at the kill may be repeated'
    rows = [json.loads(l) for l in (out/'train.jsonl').read_text().splitlines()]
    assert len(rows) == len(train) and all(r['teacher_label'] is not None for r in rows)
    report = json.loads((out/'teacher_report.json').read_text())
    assert report['splits']['train']['failed'] == 0 and report['ask']['cached'] == len(before)
    for f in [*out.iterdir()]: assert SECRET.encode() not in f.read_bytes(), f'the key leaked into {f.name}'
    assert SECRET not in res.stdout + res.stderr

def test_a_client_that_leaves_leaves_no_traceback(capfd):
    "A killed teacher run leaves its requests unanswered: the stand-in notes nothing, where socketserver would print a traceback for each."
    import socket
    with LoopbackLLM(latency=0.3) as llm:
        body = json.dumps({'model': 'stand-in', 'messages': [{'role': 'user', 'content': 'Q: Ana has 2 apples.'}]}).encode()
        for _ in range(3):
            with socket.create_connection(('127.0.0.1', llm.port)) as sk:
                sk.sendall(b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                           b'Content-Length: %d\r\n\r\n%s' % (len(body), body))
                sk.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')  # close with a reset, as a killed process does
        time.sleep(0.6)  # the answers go out to closed sockets
        assert len(llm.log) == 3
    assert 'Traceback' not in capfd.readouterr().err

def test_rate_limited_and_failing_server_still_completes(tmp_path):
    data = load_data('arith', n_train=100, n_test=20)
    with LoopbackLLM(fail_first=30, retry_after=0.05) as llm:
        taught, rep = teach(data, OpenAIChat('stand-in', base_url=llm.openai_url), PROMPTS['arith'], tmp_path/'c.sqlite',
                            in_flight=8, backoff=0.02, progress=False)
        statuses = [e['status'] for e in llm.log]
    assert statuses[:30].count(200) == 0 and {429, 500, 503} <= set(statuses)
    assert rep.ask.retries == 30 and not rep.failures and not rep.ask.failed
    assert all(all(l is not None for l in d['teacher_label']) for d in taught.values())

def test_always_failing_server_gives_a_report_not_a_hang(tmp_path):
    out = tmp_path/'out'
    with LoopbackLLM(fail_always=503) as llm:
        t0 = time.time()
        res = cli(*teach_args(llm.openai_url, out, '--n_train', '200', '--n_test', '20', '--retries', '2', '--backoff', '0.01',
                              '--abort_after', '5', '--in_flight', '2'))
        took, n_calls = time.time() - t0, len(llm.log)
    assert res.returncode == 1
    assert 'stopped early: 5 requests in a row failed, the last with: HTTP 503' in res.stdout
    assert 'rows got no answer; run the same command again' in res.stderr
    assert n_calls <= 3 * 6, 'stops after abort_after failures, each tried retries + 1 times'
    assert took < 60
    rows = [json.loads(l) for l in (out/'train.jsonl').read_text().splitlines()]
    assert len(rows) == 180 and all(r['rationale'] is None and r['label'] for r in rows), 'nothing lost: gold labels kept'

def test_gemini_api_shape(tmp_path, monkeypatch):
    monkeypatch.setenv('GEMINI_API_KEY', SECRET)
    data = load_data('arith', n_train=40, n_test=10)
    with LoopbackLLM() as llm:
        taught, rep = teach(data, Gemini('gemini-2.5-flash', base_url=llm.gemini_url), PROMPTS['arith'], tmp_path/'g.sqlite',
                            splits=['train'], n_samples=2, temperature=0.7, progress=False)
    assert rep.ask.answered == len(set(data['train']['input'])) and rep.splits['train'].samples == 2 * len(data['train'])
    assert rep.ask.prompt_tokens > 0 and rep.ask.completion_tokens > 0
    assert SECRET.encode() not in (tmp_path/'g.sqlite').read_bytes()

def test_local_seq2seq_teacher(tmp_path):
    "A tiny random-weight T5 as a local teacher: batched answers, cached, every unreadable answer counted."
    import torch
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration
    torch.manual_seed(0)
    t5 = T5ForConditionalGeneration(T5Config(vocab_size=384, d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, decoder_start_token_id=0))
    with torch.no_grad(): t5.lm_head.weight[:3] = 0  # pad, end and unknown never win: random bytes, not an empty answer
    t5.save_pretrained(tmp_path/'t5')
    ByT5Tokenizer().save_pretrained(tmp_path/'t5')
    data = {'test': load_data('arith', n_train=20, n_test=12)['test']}
    local = LocalModel(str(tmp_path/'t5'), batch_size=5, device='cpu')
    _, rep = teach(data, local, PROMPTS['arith'], tmp_path/'l.sqlite', max_tokens=8, progress=False)
    t = rep.splits['test']
    assert rep.ask.answered > 0 and rep.ask.answered + len(rep.ask.failed) == len(set(data['test']['input']))
    assert t.parsed + t.no_answer + t.unparsable + t.failed == 12
    assert all('empty content' in e for e in rep.ask.failed.values()), 'a local model fails only by answering nothing'
    _, again = teach(data, local, PROMPTS['arith'], tmp_path/'l.sqlite', max_tokens=8, progress=False)
    assert again.ask.cached == rep.ask.answered and again.ask.requests - again.ask.cached == len(rep.ask.failed)

SYMPTOM = {'openai': {'invalid_json': 'not JSON', 'wrong_shape': 'not a chat completion', 'no_choices': 'no choices',
                      'null_content': 'null content', 'empty_content': 'empty content', 'cut_off': 'Connection'},
           'gemini': {'invalid_json': 'not JSON', 'wrong_shape': 'no choices', 'no_choices': 'no choices',
                      'null_content': 'null content', 'empty_content': 'empty content', 'cut_off': 'RemoteProtocolError'}}

@pytest.mark.parametrize('api', ['openai', 'gemini'])
def test_malformed_replies_lose_no_row_and_only_their_rows_are_asked_again(tmp_path, monkeypatch, api):
    "200s with nothing usable: retried in the run, every row in the output, counts that add up, each failure with its reason; the next run asks for exactly those."
    monkeypatch.setenv('GEMINI_API_KEY', SECRET)
    data = load_data('arith', n_train=60, n_test=15)
    stuck = dict(zip((f'Q: {x}' for x in data['test']['input'][:len(MALFORMED)]), MALFORMED))  # these keep getting their fault
    def teacher(llm): return OpenAIChat('stand-in', base_url=llm.openai_url) if api == 'openai' else Gemini('gemini-2.5-flash', base_url=llm.gemini_url)
    retries = len(MALFORMED)  # more than the malformed replies that open the run: however they fall on the requests in flight, no
    # question can spend every try on them (with 2 retries, one question took three of them in a row: it depends on timing)
    def run(llm): return teach(data, teacher(llm), PROMPTS['arith'], tmp_path/'c.sqlite', n_samples=2, temperature=0.7, keep_correct=True,
                               retries=retries, backoff=0.01, in_flight=4, progress=False)
    with LoopbackLLM(malformed_first=len(MALFORMED), fault=lambda i, q: stuck.get(q)) as llm:
        taught, rep = run(llm)
        log = list(llm.log)
    assert [e['fault'] for e in log[:len(MALFORMED)]].count(None) <= 4, 'the first replies were malformed'
    for s in data:
        c = rep.splits[s]
        assert [i for i in taught[s]['id'] if '~' not in i] == data[s]['id'], f'{s}: every row, in order'
        assert c.samples == c.rows * (2 if s == 'train' else 1) == c.parsed + c.no_answer + c.unparsable + c.failed, (s, c)
    failed_q = {f"Q: {r['input']}" for s in data for r in data[s] if (s, r['id']) in {(f[0], f[1]) for f in rep.failures}}
    assert failed_q == {q for q, k in stuck.items() if k != 'no_answer_phrase'}
    reasons = {stuck[f"Q: {r['input']}"]: e for s in data for r in data[s] for fs, fi, e in rep.failures if (fs, fi) == (s, r['id'])}
    for kind, symptom in SYMPTOM[api].items(): assert symptom in reasons[kind], (kind, reasons[kind])
    tries = {q: sum(e['question'] == q for e in log) for q in failed_q}
    assert all(t % (retries + 1) == 0 for t in tries.values()), f'each stuck request tried retries + 1 = {retries + 1} times: {tries}'
    assert rep.ask.unusable >= 5 and rep.ask.retries >= len(MALFORMED) - 1
    with LoopbackLLM() as llm:
        again_taught, again = run(llm)
        asked = [e['question'] for e in llm.log]
    assert set(asked) == failed_q and len(asked) == len(rep.ask.failed), 'asked again for exactly what got nothing, once each'
    assert not again.failures and all(again.splits[s].failed == 0 for s in data)
    assert all(len(again_taught[s]) >= len(data[s]) for s in data)

content = st.none() | st.text(max_size=30) | json_values
openai_like = st.fixed_dictionaries({'choices': st.lists(st.fixed_dictionaries({}, optional={
    'index': st.integers(-1, 3) | json_values, 'message': st.fixed_dictionaries({}, optional={'role': st.just('assistant'), 'content': content}) | json_values}) | json_values, max_size=3) | json_values},
    optional={'usage': st.fixed_dictionaries({}, optional={'prompt_tokens': st.integers(-5, 99) | json_values, 'completion_tokens': json_values}) | json_values})
gemini_like = st.fixed_dictionaries({'candidates': st.lists(st.fixed_dictionaries({}, optional={
    'content': st.fixed_dictionaries({}, optional={'parts': st.lists(st.fixed_dictionaries({}, optional={'text': content}) | json_values, max_size=2) | json_values}) | json_values,
    'finishReason': st.sampled_from(['STOP', 'SAFETY', 'MAX_TOKENS'])}), max_size=3) | json_values},
    optional={'usageMetadata': st.fixed_dictionaries({}, optional={'promptTokenCount': st.integers(0, 99) | json_values}) | json_values})

@pytest.mark.parametrize('api', ['openai', 'gemini'])
def test_any_200_body_is_an_answer_or_a_retryable_failure(monkeypatch, api):
    "Generated 200 bodies, near the API's shape and far from it: the backend gives a Reply (usable or not, as `reply_problem` says) or a `Retryable`, nothing else."
    monkeypatch.setenv('GEMINI_API_KEY', SECRET)
    body = {'now': b'{}'}
    params = dict(temperature=0., max_tokens=16, n=1, stop=PROMPTS['arith'].stop)
    with LoopbackLLM(fault=lambda i, q: body['now']) as llm:
        teacher = OpenAIChat('stand-in', base_url=llm.openai_url) if api == 'openai' else Gemini('gemini-2.5-flash', base_url=llm.gemini_url)
        near = openai_like if api == 'openai' else gemini_like
        @fuzz(150)
        @given(sent=near.map(lambda x: json.dumps(x).encode()) | json_values.map(lambda x: json.dumps(x).encode()) | st.binary(max_size=40))
        def check(sent):
            body['now'] = sent
            try: reply = teacher([{'role': 'user', 'content': 'Q: 2 + 2?'}], params)
            except Retryable as e: assert str(e) and '\n' not in str(e); return
            assert isinstance(reply, Reply) and all(isinstance(c, int) and c >= 0 for c in (reply.prompt_tokens, reply.completion_tokens))
            problem = reply_problem(reply, 1)
            assert problem is None or isinstance(problem, str)
            if problem is None: assert isinstance(reply.texts[0], str) and reply.texts[0].strip()
        check()

@pytest.mark.parametrize('backend', ['openai', 'gemini', 'vertex'])
def test_dry_run_needs_no_credentials(tmp_path, backend):
    env = {k: '' for k in ('OPENAI_API_KEY', 'GEMINI_API_KEY', 'GOOGLE_API_KEY')}
    res = ok(cli('teach', '--backend', backend, '--model', 'm', '--output_dir', tmp_path/'o', '--dataset', 'arith',
                 '--n_train', '50', '--n_test', '10', '--dry_run', env=env))
    body = json.loads(res.stdout[res.stdout.index('{'):])
    assert ('messages' in body) == (backend == 'openai') and ('contents' in body) == (backend != 'openai')
    assert 'would send 60 requests' in res.stdout and not (tmp_path/'o').exists()

def test_bad_teach_input_gets_one_line(tmp_path):
    shots = tmp_path/'shots.jsonl'
    shots.write_text('{"input": "2+2?", "rationale": "2 and 2 make 4.", "label": "4"}\n{"input": "3+3?", "label": "6"}\n')
    cases = [(['--dataset', 'generic', '--data_dir', tmp_path], '--shots'),
             (['--shots', shots], f"{shots}: record 2: field 'rationale' is missing or empty"),
             (['--n_samples', '3'], 'would be identical; pass a temperature above 0'),
             (['--in_flight', '0'], '--in_flight must be at least 1')]
    for extra, msg in cases:
        assert msg in error_line(cli('teach', '--model', 'm', '--base_url', 'http://127.0.0.1:9/v1', '--output_dir', tmp_path/'o',
                                     '--n_train', '50', '--n_test', '10', *extra), 'teach'), extra
    refused(cli('teach', '--model', 'gpt-4o-mini', '--output_dir', tmp_path/'o', env={'OPENAI_API_KEY': ''}), 'OPENAI_API_KEY', 'teach')

def test_a_folder_written_by_data_is_taught_with_its_own_prompt(tmp_path):
    "What the course pipeline's first two steps do (chapter 9): `data --output_dir D`, then `teach --dataset generic --data_dir D`, no --shots."
    ok(cli('data', '--dataset', 'arith', '--n_train', 12, '--n_test', 4, '--output_dir', tmp_path/'data'))
    with LoopbackLLM() as llm:
        res = ok(cli(*teach_args(llm.openai_url, tmp_path/'taught', '--dataset', 'generic', '--data_dir', tmp_path/'data'), env={'OPENAI_API_KEY': SECRET}))
    assert 'written by `distill-sbs data --dataset arith`: its prompt and answer parser are used' in res.stdout
    assert (tmp_path/'taught'/'train.jsonl').exists()
    (tmp_path/'other').mkdir(); (tmp_path/'other'/'train.jsonl').write_text('{"input": "q", "label": "a"}\n')
    refused(cli(*teach_args('http://127.0.0.1:9', tmp_path/'t2', '--dataset', 'generic', '--data_dir', tmp_path/'other')), 'generic: pass --shots')
