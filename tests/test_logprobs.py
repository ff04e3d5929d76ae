"""`distill-sbs teach --logprobs K` against real servers: the loopback stand-in speaking the OpenAI API (read through the
real `openai` SDK), tiny local `transformers` teachers, the SQLite cache, and `distill-sbs teach` (as a real process where
it is killed with SIGKILL and resumed)."""
import json, math, signal, sqlite3, subprocess, time
import pytest
from hypothesis import given, strategies as st
from conftest import cli, error_line, fuzz, json_values, ok, refused, run_cli, teach_args
from distill_sbs.data import load_data
from distill_sbs.prompts import PROMPTS
from distill_sbs.backends import LocalModel, OpenAIChat, Retryable, TeacherError, openai_request, reply_problem
from distill_sbs.asking import TeacherCache, ask, request_key
from distill_sbs.loopback import LoopbackLLM, token_logprobs, tokenize
from distill_sbs.teacher import teach

PARAMS = dict(temperature=0., max_tokens=256, n=1, stop=PROMPTS['arith'].stop)
Q = load_data('arith', n_train=20, n_test=5)['test'][0]['input']

class Recording(LoopbackLLM):
    "The stand-in, also keeping every request body it received."
    def __init__(self, *a, **kw): super().__init__(*a, **kw); self.bodies = []
    def _reply(self, path, body):
        with self.lock: self.bodies.append(body)
        return super()._reply(path, body)

def jsonl(path): return [json.loads(l) for l in path.read_text().splitlines()]

def check_tokens(tokens, k):
    "Each token `[text, logprob, [[alt, logprob] * k]]`, the chosen one most likely, the top k a proper part of a distribution."
    for text, lp, alts in tokens:
        assert isinstance(text, str) and lp <= 0 and len(alts) == k, (text, lp, alts)
        assert alts[0] == [text, lp] and all(a[1] <= lp for a in alts)
        assert sum(math.exp(a[1]) for a in alts) <= 1

def test_the_body_asks_for_them_and_the_sdk_reads_them_back():
    with Recording() as llm:
        gpt = OpenAIChat('stand-in', base_url=llm.openai_url)
        plain = gpt(PROMPTS['arith'].messages(Q), PARAMS)
        reply = gpt(PROMPTS['arith'].messages(Q), {**PARAMS, 'logprobs': 5})
        sampled = gpt(PROMPTS['arith'].messages(Q), {**PARAMS, 'logprobs': 3, 'n': 2, 'temperature': 0.7})
    assert not any('logprobs' in k for k in llm.bodies[0]), 'a plain request is what it always was'
    assert (llm.bodies[1]['logprobs'], llm.bodies[1]['top_logprobs']) == (True, 5)
    assert plain.logprobs is None and reply.texts == plain.texts and reply_problem(reply, 1, 5) is None
    assert len(reply.logprobs) == 1 and ''.join(t[0] for t in reply.logprobs[0]) == reply.texts[0]
    check_tokens(reply.logprobs[0], 5)
    assert [t[0] for t in reply.logprobs[0]] == tokenize(reply.texts[0])
    assert len(sampled.logprobs) == 2 and all(''.join(t[0] for t in s) == x for s, x in zip(sampled.logprobs, sampled.texts))
    for s in sampled.logprobs: check_tokens(s, 3)
    assert openai_request('m', [], PARAMS) == {k: v for k, v in openai_request('m', [], {**PARAMS, 'logprobs': 0}).items()}

def test_tokens_past_the_stop_are_cut_with_the_text():
    "A server that does not stop at the stop sequence: the text is cut there, and so are its tokens."
    text = 'Ana starts with 2. So the answer is 2.\nQ: Ben has 3 pens.'
    body = json.dumps({'id': 'x', 'object': 'chat.completion', 'created': 0, 'model': 'stand-in',
                       'choices': [{'index': 0, 'message': {'role': 'assistant', 'content': text}, 'finish_reason': 'length',
                                    'logprobs': {'content': token_logprobs(text, 4, 'seed')}}]}).encode()
    with LoopbackLLM(fault=lambda i, q: body) as llm:
        reply = OpenAIChat('stand-in', base_url=llm.openai_url)(PROMPTS['arith'].messages(Q), {**PARAMS, 'logprobs': 4})
    assert reply.texts == ['Ana starts with 2. So the answer is 2.']
    assert ''.join(t[0] for t in reply.logprobs[0]) == reply.texts[0]

@pytest.mark.parametrize('kind', ['no_logprobs', 'bad_logprobs'])
def test_a_200_without_them_is_retried_never_stored(tmp_path, kind):
    reqs = {request_key('openai', 'stand-in', PROMPTS['arith'].messages(q), {**PARAMS, 'logprobs': 2}): PROMPTS['arith'].messages(q)
            for q in load_data('arith', n_train=20, n_test=6)['test']['input']}
    stuck = next(iter(reqs.values()))[-1]['content']
    cache = TeacherCache(tmp_path/'c.sqlite')
    with LoopbackLLM(fault=lambda i, q: kind if i <= 2 or q == stuck else None) as llm:
        rep = ask(OpenAIChat('stand-in', base_url=llm.openai_url), reqs, {**PARAMS, 'logprobs': 2}, cache, in_flight=2, retries=2, backoff=0.01, progress=False)
        tries = sum(e['question'] == stuck for e in llm.log)
    assert rep.answered == len(reqs) - 1 and len(rep.failed) == 1 and tries == 3 and rep.unusable >= 3
    assert 'logprobs' in next(iter(rep.failed.values()))
    assert len(cache) == len(reqs) - 1 and all(cache.get(k).logprobs for k in reqs if k in cache)

def test_the_cache_keeps_them_and_old_files_still_open(tmp_path):
    db = tmp_path/'c.sqlite'
    reqs = {request_key('openai', 'stand-in', PROMPTS['arith'].messages(Q), p): PROMPTS['arith'].messages(Q) for p in (PARAMS, {**PARAMS, 'logprobs': 3})}
    plain_key, lp_key = reqs
    with LoopbackLLM() as llm:
        gpt = OpenAIChat('stand-in', base_url=llm.openai_url)
        ask(gpt, {plain_key: reqs[plain_key]}, PARAMS, TeacherCache(db), progress=False)
        ask(gpt, {lp_key: reqs[lp_key]}, {**PARAMS, 'logprobs': 3}, TeacherCache(db), progress=False)
        fresh = gpt(PROMPTS['arith'].messages(Q), {**PARAMS, 'logprobs': 3})
    again = TeacherCache(db)
    assert again.get(lp_key) == fresh and again.get(plain_key).logprobs is None and again.get(plain_key).texts == fresh.texts
    con = sqlite3.connect(db)  # back to the table of before logprobs
    con.executescript('CREATE TABLE old AS SELECT key, backend, model, request, params, texts, prompt_tokens, completion_tokens, created FROM answers;'
                      'DROP TABLE answers; ALTER TABLE old RENAME TO answers;')
    con.close()
    old = TeacherCache(db)
    assert old.get(plain_key).texts == fresh.texts and old.get(lp_key).logprobs is None, 'opened, column added, the answers as they were'
    with LoopbackLLM() as llm:
        rep = ask(OpenAIChat('stand-in', base_url=llm.openai_url), {plain_key: reqs[plain_key]}, PARAMS, old, progress=False)
    assert (rep.cached, len(llm.log)) == (1, 0)

def test_teach_command_writes_them_beside_the_data(tmp_path):
    out = tmp_path/'out'
    with Recording() as llm:
        res = ok(cli(*teach_args(llm.openai_url, out, '--n_train', '60', '--n_test', '10', '--logprobs', '5', '--keep_correct')))
    assert all(b['top_logprobs'] == 5 and b['logprobs'] is True for b in llm.bodies)
    report = json.loads((out/'teacher_report.json').read_text())
    for split in ('train', 'valid', 'test'):
        rows, lines = jsonl(out/f'{split}.jsonl'), jsonl(out/f'{split}_logprobs.jsonl')
        by_id = {r['id']: r for r in rows}
        assert [l['id'] for l in lines] == [r['id'] for r in rows if r['rationale'] is not None]
        assert len(lines) == report['splits'][split]['logprobs'] > 0
        for l in lines:
            assert set(l) == {'id', 'text', 'tokens'} and by_id[l['id']]['rationale'] in ''.join(t[0] for t in l['tokens'])
            assert ''.join(t[0] for t in l['tokens']).startswith(l['text'])
            check_tokens(l['tokens'], 5)
    assert f"{report['splits']['train']['logprobs']} with logprobs" in res.stdout
    assert 'logprobs' not in report['ask'] and 'refused' not in report['ask']

def test_samples_get_their_own_lines(tmp_path):
    data = {'train': load_data('arith', n_train=20, n_test=5)['train']}
    with LoopbackLLM() as llm:
        taught, rep = teach(data, OpenAIChat('stand-in', base_url=llm.openai_url), PROMPTS['arith'], tmp_path/'c.sqlite',
                            n_samples=3, temperature=0.7, logprobs=2, progress=False)
    lines = taught.logprobs['train']
    assert [l['id'] for l in lines] == [i for i, r in zip(taught['train']['id'], taught['train']['rationale']) if r is not None]
    assert sum('~' in l['id'] for l in lines) == 2 * len(data['train']) and rep.splits['train'].logprobs == len(lines)

def test_plain_runs_are_unchanged(tmp_path):
    out = tmp_path/'out'
    with Recording() as llm:
        ok(cli(*teach_args(llm.openai_url, out, '--n_train', '20', '--n_test', '5')))
    assert not any('logprobs' in k for b in llm.bodies for k in b)
    assert sorted(p.name for p in out.glob('*.jsonl')) == ['test.jsonl', 'train.jsonl', 'valid.jsonl']
    con = sqlite3.connect(out/'teacher_cache.sqlite')
    assert all('logprobs' not in json.loads(p) and lp is None for p, lp in con.execute('SELECT params, logprobs FROM answers'))

@pytest.mark.slow
def test_kill_and_resume_with_logprobs(tmp_path):
    "SIGKILL midway; the rerun asks only for what was not stored, and its files equal an unbroken run's."
    out, db = tmp_path/'out', tmp_path/'out'/'teacher_cache.sqlite'
    extra = ('--n_train', '140', '--n_test', '1', '--splits', 'train', '--in_flight', '2', '--logprobs', '5')
    def stored():
        if not db.exists(): return 0
        con = sqlite3.connect(f'file:{db}?mode=ro', uri=True)
        try: return con.execute('SELECT COUNT(*) FROM answers WHERE logprobs IS NOT NULL').fetchone()[0]
        except sqlite3.OperationalError: return 0  # the file exists a moment before its table does
        finally: con.close()
    with LoopbackLLM(latency=0.1) as llm:
        proc = subprocess.Popen(['distill-sbs', *teach_args(llm.openai_url, out, *extra)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 240
        while stored() < 25:
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, 'the run never got going'
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL); proc.wait()
        con = sqlite3.connect(f'file:{db}?mode=ro', uri=True)
        before, n_log = {json.loads(r)[-1]['content'] for (r,) in con.execute('SELECT request FROM answers')}, len(llm.log)
        con.close()
        assert 25 <= len(before) < 126, 'killed midway'
        ok(run_cli(*teach_args(llm.openai_url, out, *extra)))  # the program again, as a user would rerun it
        asked = [e['question'] for e in llm.log]
    assert [q for q in asked[n_log:] if q in before] == [], 'stored answers were asked for again'
    assert len(asked) - len(set(asked)) <= 2, 'only the requests in flight at the kill may be repeated'
    assert json.loads((out/'teacher_report.json').read_text())['ask']['cached'] == len(before)
    with LoopbackLLM() as llm:
        whole = tmp_path/'whole'
        ok(cli(*teach_args(llm.openai_url, whole, *extra)))
    for name in ('train.jsonl', 'train_logprobs.jsonl'):
        assert (out/name).read_bytes() == (whole/name).read_bytes(), name
    assert len(jsonl(out/'train_logprobs.jsonl')) == 126

def test_more_than_the_server_allows_stops_at_the_first_request(tmp_path):
    out = tmp_path/'out'
    with LoopbackLLM(max_top_logprobs=20) as llm:
        res = cli(*teach_args(llm.openai_url, out, '--n_train', '100', '--n_test', '20', '--logprobs', '25'))
        n = len(llm.log)
    err = res.stderr.strip()
    assert res.returncode == 2 and len(err.splitlines()) == 1, res.stderr
    assert err.startswith('distill-sbs teach: error: --logprobs 25: the openai server refused the first request (HTTP 400:') and '<= 20' in err
    assert n == 1 and not out.exists(), 'one request, nothing written'
    out.mkdir()  # a folder that was there stays, with nothing in it
    with LoopbackLLM(max_top_logprobs=20) as llm:
        with pytest.raises(TeacherError, match='--logprobs 25: the openai server refused'):
            teach(load_data('arith', n_train=20, n_test=5), OpenAIChat('stand-in', base_url=llm.openai_url), PROMPTS['arith'],
                  out/'teacher_cache.sqlite', logprobs=25, progress=False)
    assert list(out.iterdir()) == [] and len(llm.log) == 1

def test_backends_that_cannot_send_them_are_refused_before_anything_is_sent(tmp_path):
    with LoopbackLLM() as llm:
        for backend, extra in (('gemini', []), ('vertex', ['--dry_run'])):
            res = cli('teach', '--backend', backend, '--model', 'gemini-2.5-flash', '--base_url', llm.gemini_url, '--project', 'p',
                      '--output_dir', tmp_path/'o', '--n_train', '20', '--n_test', '5', '--logprobs', '5', *extra, env={'GEMINI_API_KEY': 'k'})
            assert f'--logprobs 5: the {backend} backend cannot return log-probabilities' in error_line(res, 'teach')
        assert llm.log == [] and not (tmp_path/'o').exists()
    refused(cli(*teach_args('http://127.0.0.1:9/v1', tmp_path/'o', '--logprobs', '-1')), '--logprobs must be 0 (none) or more', 'teach')

def test_dry_run_shows_the_fields(tmp_path):
    res = ok(cli('teach', '--model', 'gpt-4o-mini', '--output_dir', tmp_path/'o', '--n_train', '20', '--n_test', '5', '--dry_run', '--logprobs', '20',
                 env={'OPENAI_API_KEY': ''}))
    body = json.loads(res.stdout[res.stdout.index('{'):])
    assert (body['logprobs'], body['top_logprobs']) == (True, 20) and 'top 20 logprobs' in res.stdout

@pytest.mark.parametrize('kind', ['causal', 'seq2seq'])
def test_local_teacher_tokens(tmp_path, kind):
    "A tiny random-weight local model: one list per sample, greedy tokens are the top-1, they join to the text."
    import torch
    from transformers import ByT5Tokenizer, GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration
    torch.manual_seed(0)
    if kind == 'causal': net = GPT2LMHeadModel(GPT2Config(vocab_size=384, n_positions=1024, n_embd=32, n_layer=1, n_head=2, bos_token_id=1, eos_token_id=1))
    else: net = T5ForConditionalGeneration(T5Config(vocab_size=384, d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16, decoder_start_token_id=0))
    with torch.no_grad(): net.lm_head.weight[:3] = 0; net.lm_head.weight[35:130] *= 4  # printable bytes win: text to check
    net.save_pretrained(tmp_path/'m'); ByT5Tokenizer().save_pretrained(tmp_path/'m')
    local = LocalModel(str(tmp_path/'m'), batch_size=2, device='cpu')
    msgs = [PROMPTS['arith'].messages(q) for q in load_data('arith', n_train=20, n_test=5)['test']['input'][:2]]
    greedy = local.batch(msgs, {**PARAMS, 'max_tokens': 6, 'logprobs': 3})
    for r in greedy:
        assert len(r.logprobs) == 1 and reply_problem(r, 1, 3) in (None, 'empty content')
        toks = r.logprobs[0]
        assert ''.join(t[0] for t in toks).strip() == r.texts[0] and len(toks) <= 6
        check_tokens(toks, 3)
    sampled = local.batch(msgs, {**PARAMS, 'max_tokens': 6, 'logprobs': 2, 'n': 2, 'temperature': 1.})
    assert all(len(r.logprobs) == 2 and all(len(a) == 2 for s in r.logprobs for _, _, a in s) for r in sampled)
    assert local.batch(msgs, {**PARAMS, 'max_tokens': 6})[0].logprobs is None

token = st.fixed_dictionaries({}, optional={'token': st.text(max_size=3) | json_values, 'logprob': st.floats(-20, 0) | json_values,
                                            'top_logprobs': st.lists(st.fixed_dictionaries({}, optional={'token': st.text(max_size=3), 'logprob': st.floats(-20, 0) | json_values}) | json_values, max_size=3) | json_values})
choice_lp = st.none() | json_values | st.fixed_dictionaries({}, optional={'content': st.lists(token | json_values, max_size=4) | json_values})

def test_any_logprobs_are_tokens_or_a_retryable_failure():
    "Generated `logprobs` in an otherwise good 200: the backend gives well-formed tokens, or a `Retryable`, nothing else."
    body = {'now': b'{}'}
    with LoopbackLLM(fault=lambda i, q: body['now']) as llm:
        gpt = OpenAIChat('stand-in', base_url=llm.openai_url)
        @fuzz(150)
        @given(lp=choice_lp)
        def check(lp):
            body['now'] = json.dumps({'id': 'x', 'object': 'chat.completion', 'created': 0, 'model': 'm', 'choices': [
                {'index': 0, 'message': {'role': 'assistant', 'content': 'So the answer is 4.'}, 'finish_reason': 'stop', 'logprobs': lp}]}).encode()
            try: reply = gpt([{'role': 'user', 'content': 'Q: 2 + 2?'}], {**PARAMS, 'logprobs': 3})
            except Retryable as e: assert str(e) and '\n' not in str(e); return
            assert reply_problem(reply, 1, 3) is None and json.loads(json.dumps(reply.logprobs)) == reply.logprobs
            for text, logprob, alts in reply.logprobs[0]:
                assert isinstance(text, str) and math.isfinite(logprob) and all(isinstance(a, str) and math.isfinite(p) for a, p in alts)
        check()

def test_a_server_that_ignores_them_costs_one_request(tmp_path):
    "A server that answers 200s without logprobs (it ignores the field) stops the run after its first answer: one request, one line, nothing written."
    out = tmp_path/'out'
    with LoopbackLLM(fault=lambda i, q: 'no_logprobs') as llm:
        res = cli(*teach_args(llm.openai_url, out, '--n_train', '50', '--n_test', '10', '--logprobs', '5'))
        n = len(llm.log)
    err = res.stderr.strip()
    assert res.returncode == 2 and len(err.splitlines()) == 1, res.stderr
    assert err.startswith('distill-sbs teach: error: --logprobs 5: the openai server answered the first request without them') and n == 1
    assert not out.exists()
