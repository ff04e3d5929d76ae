"""The OpenAI routes of `distill-sbs serve` (chapters 6 and 6's OpenAI protocol) called by the real `openai` SDK over
loopback: chat and text completions, whole and streamed, `n`, seeds, stop texts, log-probabilities, concurrent
streaming clients, the API key, and bad parameters answered in OpenAI's shape. The students have random weights: what
is checked is that each way of asking gives the same tokens, not that they make sense (SmolLM2's test does that)."""
import json, os, subprocess, time
from concurrent.futures import ThreadPoolExecutor
import httpx2 as httpx
import openai
import pytest
from hypothesis import given, strategies as st
from conftest import fuzz, json_values
from distill_sbs.inference import Student
from distill_sbs.openai_api import OpenAIError, chat_prompt, model_ids, openai_job
from distill_sbs.serve import free_port, wait_for
from distill_sbs.students import load_student, tiny_student

QS = [f'Ana has {a} apples and buys {b} more. How many apples does Ana have?' for a in (2, 3, 4, 5) for b in (1, 2)]
ask = lambda q: [{'role': 'user', 'content': q}]

def start(model_dir, *flags, env=None):
    "`distill-sbs serve` in a subprocess on a free port: (process, base URL, its first line)."
    port = free_port()
    proc = subprocess.Popen(['distill-sbs', 'serve', '--model_dir', str(model_dir), '--port', str(port), '--dtype', 'float32', *flags],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = next(l for l in proc.stdout if l.startswith('serving') or proc.poll() is not None)
    try: wait_for(f'http://127.0.0.1:{port}/health', proc=proc)
    except RuntimeError as e: pytest.fail(f'{e}:\n{proc.stdout.read()}')
    return proc, f'http://127.0.0.1:{port}', line

def stop(proc):
    proc.terminate()
    log = proc.communicate(timeout=30)[0]
    assert 'Traceback' not in log, f'the server logged a traceback:\n{log[-3000:]}'

@pytest.fixture(scope='module')
def causal(tmp_path_factory):
    "A served causal student (tiny-causal, random weights, distilling step-by-step) and an `openai` client for it."
    d = tmp_path_factory.mktemp('causal')/'student'
    model, tok = load_student('tiny-causal')
    model.save_pretrained(d); tok.save_pretrained(d)
    (d/'train_config.json').write_text(json.dumps({'model_type': 'task_prefix'}))
    proc, url, line = start(d)
    yield openai.OpenAI(base_url=url + '/v1', api_key='unused', max_retries=0), url, line
    stop(proc)

@pytest.fixture(scope='module')
def seq2seq(tmp_path_factory):
    "A served seq2seq student (the tiny T5) that needs an API key, given in the environment as on a real machine."
    d = tmp_path_factory.mktemp('seq2seq')/'t5'
    model, tok = tiny_student(texts=QS)
    model.save_pretrained(d); tok.save_pretrained(d)
    (d/'train_config.json').write_text(json.dumps({'model_type': 'task_prefix'}))
    proc, url, line = start(d, '--model_name', 'tiny-t5', env={'DSS_API_KEY': 'sk-test-key'})
    yield openai.OpenAI(base_url=url + '/v1', api_key='sk-test-key', max_retries=0), url, line
    stop(proc)

def chat(client, q, **kw): return client.chat.completions.create(model='student', messages=ask(q), **kw)

def streamed(stream):
    "The texts, finish reasons and usage of a streamed answer, put back together from its chunks by choice."
    texts, ends, usage = {}, {}, None
    for ch in stream:
        usage = ch.usage or usage
        for c in ch.choices:
            texts[c.index] = texts.get(c.index, '') + ((c.delta.content or '') if hasattr(c, 'delta') else c.text)
            if c.finish_reason: ends[c.index] = c.finish_reason
    return [texts[i] for i in sorted(texts)], [ends[i] for i in sorted(ends)], usage

def test_models_lists_the_answer_and_the_rationale(causal, seq2seq):
    assert [m.id for m in causal[0].models.list()] == ['student', 'student:explain']
    assert [m.id for m in seq2seq[0].models.list()] == ['tiny-t5', 'tiny-t5:explain']  # --model_name

def test_greedy_chat_is_the_predict_routes_answer(causal):
    client, url, _ = causal
    said = [chat(client, q, temperature=0, max_tokens=8).choices[0].message.content for q in QS[:3]]
    predicted = httpx.post(url + '/predict', json={'instances': QS[:3]}, timeout=60).json()['predictions']
    assert [s.strip() for s in said] == [p['answer'] for p in predicted]

def test_a_streamed_answer_is_the_whole_answer_for_the_same_seed(causal):
    client = causal[0]
    whole = chat(client, QS[0], seed=11, temperature=0.9, top_p=0.95, max_tokens=16)
    texts, ends, usage = streamed(chat(client, QS[0], seed=11, temperature=0.9, top_p=0.95, max_tokens=16, stream=True,
                                       stream_options={'include_usage': True}))
    assert texts == [whole.choices[0].message.content] and ends == [whole.choices[0].finish_reason]
    assert usage.model_dump() == whole.usage.model_dump() and whole.usage.completion_tokens > 0
    assert chat(client, QS[0], seed=12, temperature=0.9, max_tokens=16).choices[0].message.content != texts[0]  # another seed, another draw

def test_n_answers_each_drawn_with_its_own_seed(causal):
    client = causal[0]
    many = chat(client, QS[1], n=3, seed=5, temperature=1.0, max_tokens=12, logprobs=True)
    assert [c.index for c in many.choices] == [0, 1, 2] and len({c.message.content for c in many.choices}) > 1
    assert [chat(client, QS[1], seed=5 + j, temperature=1.0, max_tokens=12).choices[0].message.content for j in range(3)] == [c.message.content for c in many.choices]
    assert many.usage.completion_tokens == sum(len(c.logprobs.content) for c in many.choices)  # every answer's tokens, the prompt's once
    assert many.usage.prompt_tokens == chat(client, QS[1], max_tokens=1).usage.prompt_tokens

def test_a_stop_text_ends_the_answer_before_it(causal):
    client = causal[0]
    full = chat(client, QS[2], seed=3, temperature=1.0, max_tokens=24).choices[0].message.content
    assert len(full) > 6, full
    stop_at = full[4:6]
    cut = chat(client, QS[2], seed=3, temperature=1.0, max_tokens=24, stop=[stop_at, 'never appears']).choices[0]
    assert (cut.message.content, cut.finish_reason) == (full[:full.find(stop_at)], 'stop')
    texts, ends, _ = streamed(chat(client, QS[2], seed=3, temperature=1.0, max_tokens=24, stop=stop_at, stream=True))
    assert (texts, ends) == ([cut.message.content], ['stop'])

def test_logprobs_are_the_models_and_the_greedy_token_is_the_likeliest(causal):
    client = causal[0]
    r = chat(client, QS[3], temperature=0, max_tokens=6, logprobs=True, top_logprobs=3).choices[0]
    assert len(r.logprobs.content) == 6
    for t in r.logprobs.content:
        assert len(t.top_logprobs) == 3 and t.logprob <= 0 and t.logprob == pytest.approx(t.top_logprobs[0].logprob, abs=1e-6)
        assert [a.logprob for a in t.top_logprobs] == sorted((a.logprob for a in t.top_logprobs), reverse=True)
    c = client.completions.create(model='student', prompt='Ana has', max_tokens=5, temperature=0, logprobs=2).choices[0]
    assert len(c.logprobs.tokens) == 5 and all(len(a) <= 2 for a in c.logprobs.top_logprobs)
    assert c.logprobs.text_offset == [sum(map(len, c.logprobs.tokens[:i])) for i in range(5)]

def test_completions_answer_each_prompt_n_times_streamed_or_not(causal):
    client = causal[0]
    kw = dict(model='student', prompt=['Ana has 3 apples', 'Bo has'], n=2, max_tokens=6, seed=2, temperature=0.8)
    whole = client.completions.create(**kw)
    assert [c.index for c in whole.choices] == [0, 1, 2, 3] and whole.object == 'text_completion'
    texts, ends, _ = streamed(client.completions.create(**kw, stream=True))
    assert texts == [c.text for c in whole.choices] and ends == [c.finish_reason for c in whole.choices]

def test_concurrent_streaming_clients_get_what_one_at_a_time_gets(causal):
    client, url, _ = causal
    kw = lambda i: dict(seed=i, temperature=0.8 if i % 2 else 0, max_tokens=10)
    alone = [chat(client, QS[i % len(QS)], **kw(i)).choices[0].message.content for i in range(16)]
    before = httpx.get(url + '/health').json()
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda i: streamed(chat(client, QS[i % len(QS)], stream=True, **kw(i)))[0][0], range(16)))
    after = httpx.get(url + '/health').json()
    assert together == alone
    assert after['generates'] - before['generates'] < 16  # streams shared a generate

def test_a_client_that_leaves_mid_stream_stops_its_tokens(causal):
    "Its row ends at the next token (the health route counts it), and the server keeps serving."
    client, url, _ = causal
    before = httpx.get(url + '/health').json()['cancelled']
    with httpx.stream('POST', url + '/v1/chat/completions', json={'model': 'student', 'messages': ask(QS[0]), 'max_tokens': 1000,
                                                                   'stream': True, 'temperature': 1.0, 'stop': None}, timeout=60) as r:
        first = next(r.iter_lines())
    assert first.startswith('data: {')
    for _ in range(300):
        if httpx.get(url + '/health').json()['cancelled'] > before: break
        time.sleep(0.1)
    assert httpx.get(url + '/health').json()['cancelled'] == before + 1
    assert chat(client, QS[1], max_tokens=2).choices

BAD = [  # (what is sent, as the SDK's arguments, the exception, the parameter OpenAI names, words of its message)
    (dict(temperature=3), openai.BadRequestError, 'temperature', 'expected a value <= 2'),
    (dict(n=0), openai.BadRequestError, 'n', 'expected a value >= 1'),
    (dict(top_p=0), openai.BadRequestError, 'top_p', 'expected a value > 0'),
    (dict(stop=list('abcde')), openai.BadRequestError, 'stop', 'maximum length 4'),
    (dict(logit_bias={'5': 10}), openai.BadRequestError, 'logit_bias', "Unsupported parameter: 'logit_bias'"),
    (dict(tools=[{'type': 'function', 'function': {'name': 'f', 'parameters': {}}}]), openai.BadRequestError, 'tools', "Unsupported parameter: 'tools'"),
    (dict(response_format={'type': 'json_object'}), openai.BadRequestError, 'response_format', 'Unsupported parameter'),
    (dict(top_logprobs=2), openai.BadRequestError, 'top_logprobs', "needs 'logprobs'"),
    (dict(extra_body={'top_k': 5}), openai.BadRequestError, 'top_k', 'Unrecognized request argument supplied: top_k'),
    (dict(max_tokens=10**6), openai.BadRequestError, 'max_tokens', 'expected a value <= 1024'),
    (dict(messages=[{'role': 'tool', 'content': 'x', 'tool_call_id': 'a'}]), openai.BadRequestError, 'messages[0].role', 'a student calls no tools'),
    (dict(model='gpt-4o'), openai.NotFoundError, 'model', 'The model `gpt-4o` does not exist'),
]

@pytest.mark.parametrize('kw,error,param,says', BAD, ids=[p for _, _, p, _ in BAD])
def test_bad_parameters_are_answered_as_openai_answers_them(causal, kw, error, param, says):
    client = causal[0]
    with pytest.raises(error) as e: client.chat.completions.create(**{'model': 'student', 'messages': ask('Q?'), **kw})
    assert e.value.param == param and says in e.value.message and e.value.body['type'] == 'invalid_request_error'
    assert chat(client, 'still there?', max_tokens=2).choices  # and it keeps serving

def test_presence_penalty_zero_and_user_are_accepted(causal):
    "Values that ask for nothing, and bookkeeping, are not refused (LangChain and others send them)."
    assert chat(causal[0], QS[0], max_tokens=2, presence_penalty=0, frequency_penalty=0, user='u-1', logit_bias={}).choices

def test_a_seq2seq_student_behind_a_key(seq2seq):
    client, url, line = seq2seq
    assert 'needs the API key' in line and 'no authentication' not in line
    r = client.chat.completions.create(model='tiny-t5', messages=ask(QS[0]), temperature=0, max_tokens=8)
    assert r.choices[0].message.content.strip() == httpx.post(url + '/predict', json={'instances': [QS[0]]}, headers={'authorization': 'Bearer sk-test-key'},
                                                              timeout=60).json()['predictions'][0]['answer']
    texts, _, _ = streamed(client.completions.create(model='tiny-t5:explain', prompt='explain: ' + QS[1], max_tokens=6, seed=1, stream=True))
    assert texts == [client.completions.create(model='tiny-t5:explain', prompt='explain: ' + QS[1], max_tokens=6, seed=1).choices[0].text]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model='tiny-t5', messages=[{'role': 'system', 'content': 'Be brief.'}, *ask(QS[0])])
    assert e.value.param == 'messages' and 'reads one question' in e.value.message
    with pytest.raises(openai.AuthenticationError) as e:
        openai.OpenAI(base_url=url + '/v1', api_key='sk-wrong', max_retries=0).models.list()
    assert e.value.code == 'invalid_api_key'
    assert httpx.post(url + '/predict', json={'instances': ['q']}).status_code == 401
    assert httpx.get(url + '/health').status_code == 200  # Vertex AI's health probe sends no key

def test_the_start_up_line_says_there_is_no_key(causal):
    assert 'no authentication' in causal[2] and '/v1' in causal[2]

def test_a_rationale_first_student_is_asked_with_its_trigger():
    model, tok = load_student('tiny-causal')
    cot = Student(model, tok, 'cot')
    assert chat_prompt(cot, ask('Q?')) == cot.kind.prompt(tok, cot.recipe.ask('Q?'), 'predict', 'cot') and "step by step" in chat_prompt(cot, ask('Q?'))
    assert model_ids('run', cot) == {'run': 'predict'}  # it has no explain task: its answer carries its rationale
    with pytest.raises(OpenAIError, match='The model `run:explain` does not exist'):
        openai_job({'model': 'run:explain', 'messages': ask('Q?')}, 'chat', cot, model_ids('run', cot))

@pytest.fixture(scope='module')
def tiny():
    "tiny-causal as a student, in memory (made when a test asks, not when the suite collects this file)."
    return Student(*load_student('tiny-causal'))

messages = st.lists(st.fixed_dictionaries({'role': st.sampled_from(['user', 'system', 'assistant', 'tool']) | json_values,
                                           'content': st.text(max_size=30) | st.lists(st.fixed_dictionaries({'type': st.just('text'), 'text': st.text(max_size=9)}), max_size=2) | json_values}),
                    max_size=3) | json_values
requests = st.fixed_dictionaries({'model': st.sampled_from(['run', 'run:explain', 'other']) | json_values},
                                 optional={**{k: json_values | st.integers(-3, 30) | st.floats(-1, 3) | st.booleans() for k in
                                              ['max_tokens', 'temperature', 'top_p', 'n', 'seed', 'logprobs', 'top_logprobs', 'stream', 'stop',
                                               'stream_options', 'logit_bias', 'presence_penalty', 'tools', 'echo', 'whatever']},
                                           'messages': messages, 'prompt': st.text(max_size=30) | st.lists(st.text(max_size=9), max_size=3) | json_values})

@fuzz(400)
@given(body=requests, route=st.sampled_from(['chat', 'completion']))
def test_any_request_is_read_or_refused_in_one_line(tiny, body, route):
    "Generated requests: each is a `Job` whose answers the limits allow, or an `OpenAIError` naming what to fix in one line."
    try: job = openai_job(body, route, tiny, model_ids('run', tiny), max_tokens=64, max_choices=8)
    except OpenAIError as e: assert e.status in (400, 404) and '\n' not in str(e) and 0 < len(str(e)) < 400, str(e)
    else:
        rows = job.rows()
        assert 1 <= len(rows) <= 8 and all(isinstance(p, str) and 1 <= s.max_tokens <= 64 and s.temperature >= 0 and 0 < s.top_p <= 1 for p, s in rows)

@fuzz(40)
@given(body=requests, route=st.sampled_from(['chat/completions', 'completions']))
def test_the_routes_answer_generated_requests_without_a_5xx(causal, body, route):
    "The same requests over HTTP, drawn and streamed for real: a 200 or a 4xx in OpenAI's shape, never a 5xx."
    url = causal[1]
    if isinstance(body.get('model'), str) and body['model'].startswith('run'): body = {**body, 'model': body['model'].replace('run', 'student', 1)}
    r = httpx.post(f'{url}/v1/{route}', json=body, timeout=120)
    assert r.status_code < 500, (r.status_code, r.text[:300], body)
    if r.status_code >= 400: assert set(r.json()['error']) == {'message', 'type', 'param', 'code'} and '\n' not in r.json()['error']['message']
    elif r.headers['content-type'].startswith('text/event-stream'): assert r.text.rstrip().endswith('data: [DONE]'), r.text[-300:]

def test_a_chat_template_that_refuses_the_messages_is_a_400():
    "Gemma's template, for one, raises on a system turn: the client gets that line as a 400, not a 500."
    model, tok = load_student('tiny-causal')
    tok.chat_template = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}" + tok.chat_template
    student = Student(model, tok)
    with pytest.raises(OpenAIError, match='System role not supported') as e:
        openai_job({'model': 'run', 'messages': [{'role': 'system', 'content': 'Be brief.'}, *ask('Q?')]}, 'chat', student, model_ids('run', student))
    assert e.value.param == 'messages' and e.value.status == 400

@pytest.mark.slow
def test_smollm2_streams_its_answer_through_the_openai_sdk(smollm2):
    "The real pretrained model: the official client streams its answer, the stream is the whole answer, and a stop text cuts it."
    proc, url, _ = start(smollm2, '--model_name', 'smollm2')
    try:
        client = openai.OpenAI(base_url=url + '/v1', api_key='unused', max_retries=0)
        q = [{'role': 'user', 'content': 'What is the capital of France?'}]
        whole = client.chat.completions.create(model='smollm2', messages=q, temperature=0, max_tokens=24).choices[0]
        assert 'Paris' in whole.message.content and whole.finish_reason == 'stop'
        texts, ends, _ = streamed(client.chat.completions.create(model='smollm2', messages=q, temperature=0, max_tokens=24, stream=True))
        assert (texts, ends) == ([whole.message.content], ['stop'])
        cut = client.chat.completions.create(model='smollm2', messages=q, temperature=0, max_tokens=24, stop=['Paris']).choices[0]
        assert cut.message.content == whole.message.content.split('Paris')[0] and cut.finish_reason == 'stop'
    finally: stop(proc)
