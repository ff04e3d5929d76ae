"""The stand-in teacher as each vendor's SDK sees it: Anthropic Messages, OpenAI's Responses API, thinking traces in each
vendor's field, and the three batch APIs (OpenAI Batch, Anthropic Message Batches, Gemini batch mode) with their fault
switches and logs. Every request goes through the real SDK client, which must parse what the server sends."""
import json
import anthropic, openai, pytest
from google import genai
from google.genai import errors as genai_errors, types
from distill_sbs.arith import arith_teacher
from distill_sbs.data import load_data
from distill_sbs.loopback import LoopbackLLM, think_aloud

Q = load_data('arith', n_train=20, n_test=5)['test'][0]['input']
ANSWER = arith_teacher(Q)

def clients(llm):
    "The three SDKs pointed at the stand-in, with no retries of their own."
    return (openai.OpenAI(base_url=llm.openai_url, api_key='x', max_retries=0),
            anthropic.Anthropic(base_url=llm.anthropic_url, api_key='x', max_retries=0),
            genai.Client(api_key='x', http_options=types.HttpOptions(base_url=llm.gemini_url)))

def chat(q=Q, **kw): return {'model': 'stand-in', 'messages': [{'role': 'user', 'content': f'Q: {q}'}], 'temperature': 0, **kw}
def message(q=Q, **kw): return {'model': 'claude-x', 'max_tokens': 512, 'messages': [{'role': 'user', 'content': f'Q: {q}'}], **kw}
def jsonl(text): return [json.loads(l) for l in text.splitlines()]
def timeless(body): return {k: v for k, v in body.items() if k not in ('created', 'created_at')}

def openai_batch(oa, bodies, url='/v1/chat/completions', ids=None):
    "Upload `bodies` as a batch input file and start a batch of them."
    lines = [{'custom_id': c, 'method': 'POST', 'url': url, 'body': b} for c, b in zip(ids or [f'r{i}' for i in range(len(bodies))], bodies)]
    f = oa.files.create(file=('in.jsonl', ''.join(json.dumps(l) + '\n' for l in lines).encode()), purpose='batch')
    return oa.batches.create(input_file_id=f.id, endpoint=url, completion_window='24h', metadata={'run': 't'})

# ---- synchronous endpoints

def test_anthropic_messages_parse_into_the_sdks_types():
    with LoopbackLLM() as llm:
        _, an, _ = clients(llm)
        m = an.messages.create(**message(system='Answer step by step.'))
        blocks = an.messages.create(**message(system=[{'type': 'text', 'text': 'sys'}], messages=[
            {'role': 'user', 'content': [{'type': 'text', 'text': f'Q: {Q}'}]}]))
        cut = an.messages.create(**message(stop_sequences=[' After buying']))
        short = an.messages.create(**message(max_tokens=5))
    assert isinstance(m, anthropic.types.Message) and m.type == 'message' and m.role == 'assistant' and m.model == 'claude-x'
    assert m.content[0].type == 'text' and m.content[0].text == ANSWER and m.stop_reason == 'end_turn' and m.stop_sequence is None
    assert m.usage.input_tokens > 0 and m.usage.output_tokens == len(ANSWER) // 4
    assert blocks.content[0].text == ANSWER
    assert cut.stop_reason == 'stop_sequence' and cut.stop_sequence == ' After buying' and ' After buying' not in cut.content[0].text
    assert short.stop_reason == 'max_tokens' and len(short.content[0].text) == 20

@pytest.mark.parametrize('status,error', [(429, anthropic.RateLimitError), (500, anthropic.InternalServerError),
                                          (529, anthropic.APIStatusError), (400, anthropic.BadRequestError)])
def test_anthropic_errors_have_anthropics_shape(status, error):
    with LoopbackLLM(fail_always=status) as llm:
        _, an, _ = clients(llm)
        with pytest.raises(error) as e: an.messages.create(**message())
    assert e.value.status_code == status and e.value.body['type'] == 'error' and e.value.body['error']['type'] == {429: 'rate_limit_error', 500: 'api_error', 529: 'overloaded_error', 400: 'invalid_request_error'}[status]

def test_anthropic_malformed_replies_and_the_fault_counter():
    with LoopbackLLM(fail_first=1, fault=lambda i, q: {2: 'empty_content', 3: 'no_answer_phrase', 4: 'wrong_shape', 5: 'invalid_json', 6: 'cut_off'}.get(i)) as llm:
        _, an, _ = clients(llm)
        with pytest.raises(anthropic.RateLimitError): an.messages.create(**message())
        assert an.messages.create(**message()).content == []
        assert 'So the answer' not in an.messages.create(**message()).content[0].text
        assert not isinstance(an.messages.create(**message()), anthropic.types.Message)  # the SDK takes another shape without a word
        with pytest.raises(json.JSONDecodeError): an.messages.create(**message())  # invalid_json: the SDK's json.loads raises as it is
        with pytest.raises(anthropic.APIConnectionError): an.messages.create(**message())  # cut_off
    assert [e['fault'] for e in llm.log] == [429, 'empty_content', 'no_answer_phrase', 'wrong_shape', 'invalid_json', 'cut_off']

def test_responses_api():
    with LoopbackLLM() as llm:
        oa, _, _ = clients(llm)
        r = oa.responses.create(model='gpt-x', input=f'Q: {Q}', instructions='Reason step by step.', temperature=0, max_output_tokens=500)
        listed = oa.responses.create(model='gpt-x', input=[{'role': 'user', 'content': [{'type': 'input_text', 'text': f'Q: {Q}'}]}])
        short = oa.responses.create(model='gpt-x', input=f'Q: {Q}', max_output_tokens=5)
    assert r.status == 'completed' and r.output_text == ANSWER == listed.output_text and r.model == 'gpt-x'
    assert [o.type for o in r.output] == ['message'] and r.output[0].content[0].type == 'output_text'
    u = r.usage
    assert u.output_tokens == len(ANSWER) // 4 and u.output_tokens_details.reasoning_tokens == 0 and u.input_tokens_details.cached_tokens == 0
    assert u.total_tokens == u.input_tokens + u.output_tokens
    assert short.status == 'incomplete' and short.incomplete_details.reason == 'max_output_tokens'

def test_unknown_routes_are_404s():
    with LoopbackLLM() as llm:
        oa, an, g = clients(llm)
        with pytest.raises(openai.NotFoundError): oa.embeddings.create(model='e', input='x')
        with pytest.raises(anthropic.NotFoundError): an.messages.batches.retrieve('msgbatch_nope')
        with pytest.raises(openai.NotFoundError): oa.batches.retrieve('batch_nope')
        with pytest.raises(openai.NotFoundError): oa.files.content('file-nope')
        with pytest.raises(openai.NotFoundError): oa.batches.create(input_file_id='file-nope', endpoint='/v1/chat/completions', completion_window='24h')
        with pytest.raises(genai_errors.ClientError) as e: g.batches.get(name='batches/nope')
    assert e.value.code == 404 and llm.batches == {}

# ---- thinking

def test_think_aloud_is_a_deterministic_longer_trace():
    t = think_aloud(Q, 0)
    assert t == think_aloud(Q, 0) and t != think_aloud(Q, 3) and len(t) > 2 * len(ANSWER)
    assert Q in t and 'Check:' in t and t.endswith('So the total is 3.') and t.count('. ') >= 5
    assert any('Wait, let me re-check' in think_aloud(Q, s) for s in range(10))

def test_no_reasoning_no_thinking_fields():
    with LoopbackLLM() as llm:
        oa, an, g = clients(llm)
        c = oa.chat.completions.create(**chat())
        m = an.messages.create(**message(thinking={'type': 'enabled', 'budget_tokens': 100}))
        gr = g.models.generate_content(model='gemini-x', contents=f'Q: {Q}', config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True)))
    assert getattr(c.choices[0].message, 'reasoning_content', None) is None and c.usage.completion_tokens_details is None
    assert [b.type for b in m.content] == ['text'] and gr.usage_metadata.thoughts_token_count is None and len(gr.candidates[0].content.parts) == 1

def test_reasoning_in_each_vendors_field():
    trace, r_tok = think_aloud(Q, 0), len(think_aloud(Q, 0)) // 4
    with LoopbackLLM(reasoning=think_aloud) as llm:
        oa, an, g = clients(llm)
        c = oa.chat.completions.create(**chat(n=2, temperature=1))
        shown = oa.responses.create(model='o-x', input=f'Q: {Q}', reasoning={'effort': 'low', 'summary': 'auto'})
        hidden = oa.responses.create(model='o-x', input=f'Q: {Q}', reasoning={'effort': 'low'})
        think = lambda on: types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=on))
        g_on, g_off = (g.models.generate_content(model='gemini-x', contents=f'Q: {Q}', config=think(on)) for on in (True, False))
        a_on, a_off = an.messages.create(**message(thinking={'type': 'enabled', 'budget_tokens': 400})), an.messages.create(**message())
    assert [ch.message.reasoning_content for ch in c.choices] == [trace, think_aloud(Q, 1)] and c.choices[0].message.content == ANSWER
    assert c.usage.completion_tokens_details.reasoning_tokens == r_tok + len(think_aloud(Q, 1)) // 4
    assert c.usage.completion_tokens == c.usage.completion_tokens_details.reasoning_tokens + sum(len(ch.message.content) // 4 for ch in c.choices)
    assert [o.type for o in shown.output] == ['reasoning', 'message'] and shown.output[0].summary[0].text == trace and shown.output_text == ANSWER
    assert hidden.output[0].summary == [] and hidden.usage.output_tokens_details.reasoning_tokens == r_tok == shown.usage.output_tokens_details.reasoning_tokens
    parts = g_on.candidates[0].content.parts
    assert [p.thought for p in parts] == [True, None] and parts[0].text == trace and g_on.text == ANSWER
    assert len(g_off.candidates[0].content.parts) == 1 and g_off.usage_metadata.thoughts_token_count == r_tok == g_on.usage_metadata.thoughts_token_count
    assert [b.type for b in a_on.content] == ['thinking', 'text'] and a_on.content[0].thinking == trace and a_on.content[0].signature
    assert a_on.usage.output_tokens == a_off.usage.output_tokens + r_tok and [b.type for b in a_off.content] == ['text']

# ---- OpenAI Batch API

def test_openai_batch_end_to_end_equals_the_sync_bodies():
    bodies = [chat(), chat(q='Dara has 3 books. Dara buys 3 more and then buys 1 more. How many books does Dara have now?', stop=['\nQ:'])]
    with LoopbackLLM(batch_polls=2, reasoning=think_aloud) as llm:
        oa, _, _ = clients(llm)
        sync = [oa.chat.completions.with_raw_response.create(**b).http_response.json() for b in bodies]
        b = openai_batch(oa, bodies)
        seen = [oa.batches.retrieve(b.id).status for _ in range(3)]
        b = oa.batches.retrieve(b.id)
        out = jsonl(oa.files.content(b.output_file_id).text)
        r_sync = oa.responses.with_raw_response.create(model='x', input=f'Q: {Q}').http_response.json()
        rb = openai_batch(oa, [{'model': 'x', 'input': f'Q: {Q}'}], url='/v1/responses')
        for _ in range(3): rb = oa.batches.retrieve(rb.id)
        r_out = jsonl(oa.files.content(rb.output_file_id).text)
    assert isinstance(b, openai.types.Batch) and b.status == 'completed' and b.id.startswith('batch_') and b.input_file_id.startswith('file-')
    assert seen == ['in_progress', 'in_progress', 'completed'] and b.error_file_id is None and b.metadata == {'run': 't'}
    assert (b.request_counts.total, b.request_counts.completed, b.request_counts.failed) == (2, 2, 0) and b.completed_at
    assert [l['custom_id'] for l in out] == ['r0', 'r1'] and all(l['id'].startswith('batch_req_') and l['error'] is None for l in out)
    assert [timeless(l['response']['body']) for l in out] == [timeless(s) for s in sync] and out[0]['response']['status_code'] == 200
    assert timeless(r_out[0]['response']['body']) == timeless(r_sync) and rb.endpoint == '/v1/responses'
    assert [e['status'] for e in llm.log] == [200] * 6  # batch lines are logged like sync requests
    ops = [(e['vendor'], e['op'], e['lines']) for e in llm.batch_log]
    assert ops[:6] == [('openai', 'upload', 2), ('openai', 'create', 2), *[('openai', 'poll', None)] * 4] and ops[6] == ('openai', 'results', 2)

def test_openai_batch_faults_and_the_error_file():
    fault = lambda batch, line, cid: {2: 503, 3: 'expired', 4: 'malformed', 5: 'unknown_id'}.get(line)
    with LoopbackLLM(batch_polls=0, batch_fault=fault, fail_first=3, malformed_first=2) as llm:
        oa, _, _ = clients(llm)
        b = oa.batches.retrieve(openai_batch(oa, [chat()] * 5).id)
        out, err = oa.files.content(b.output_file_id).text.splitlines(), jsonl(oa.files.content(b.error_file_id).text)
    assert b.status == 'completed' and (b.request_counts.completed, b.request_counts.failed) == (3, 2)
    assert json.loads(out[0])['response']['status_code'] == 200 and len(out) == 4
    with pytest.raises(ValueError): json.loads(out[1])  # line 4's result is not JSON
    assert json.loads(out[2])['custom_id'] == 'r4' and json.loads(out[3])['custom_id'] not in {f'r{i}' for i in range(5)}
    assert err[0]['custom_id'] == 'r1' and err[0]['response']['status_code'] == 503 and err[0]['response']['body']['error']['code'] == 503
    assert err[1] == {**err[1], 'custom_id': 'r2', 'response': None} and err[1]['error']['code'] == 'batch_expired'
    assert [e['status'] for e in llm.log] == [200, 503, 200, 200] and llm.seen == 0  # not counted by fail_first/malformed_first

def test_openai_invalid_files_fail_the_batch():
    with LoopbackLLM() as llm:
        oa, _, _ = clients(llm)
        dup = openai_batch(oa, [chat(), chat()], ids=['a', 'a'])
        f = oa.files.create(file=('bad.jsonl', b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\nnot json\n'), purpose='batch')
        bad = oa.batches.create(input_file_id=f.id, endpoint='/v1/chat/completions', completion_window='24h')
        dup = oa.batches.retrieve(dup.id)
    assert dup.status == bad.status == 'failed' and dup.output_file_id is None and llm.log == []
    assert [e.code for e in dup.errors.data] == ['duplicate_custom_id'] and [(e.code, e.line) for e in bad.errors.data] == [('invalid_json_line', 2)]

def test_openai_list_cancel_and_expiry():
    with LoopbackLLM(batch_polls=None, expire_batches=[2]) as llm:
        oa, _, _ = clients(llm)
        ids = [openai_batch(oa, [chat()] * 4).id for _ in range(3)]
        page = oa.batches.list(limit=2)
        rest = oa.batches.list(limit=2, after=page.data[-1].id)
        assert [b.status for b in (oa.batches.retrieve(i) for i in ids)] == ['in_progress'] * 3  # never ends by itself
        cancelled = oa.batches.cancel(ids[0])
        llm.batch_polls = 0
        expired = oa.batches.retrieve(ids[1])
        errors = jsonl(oa.files.content(expired.error_file_id).text)
    assert [b.id for b in page.data] == ids[:0:-1] and page.has_more and [b.id for b in rest.data] == ids[:1] and not rest.has_more
    assert cancelled.status == 'cancelled' and cancelled.cancelled_at and cancelled.output_file_id is None
    assert expired.status == 'expired' and expired.expired_at and (expired.request_counts.completed, expired.request_counts.failed) == (2, 2)
    assert [e['error']['code'] for e in errors] == ['batch_expired'] * 2 and len(llm.log) == 2
    assert sum(e['op'] == 'create' for e in llm.batch_log) == 3 and [e['op'] for e in llm.batch_log if e['batch'] == ids[0]][-1] == 'cancel'

# ---- Anthropic Message Batches

def test_anthropic_batch_results_errored_and_expired():
    fault = lambda batch, line, cid: {'b': 500, 'c': 'expired', 'd': 'unknown_id'}.get(cid)
    reqs = [{'custom_id': c, 'params': message()} for c in 'abcd']
    with LoopbackLLM(batch_fault=fault) as llm:
        _, an, _ = clients(llm)
        sync = an.messages.with_raw_response.create(**message()).http_response.json()
        b = an.messages.batches.create(requests=reqs)
        with pytest.raises(anthropic.AnthropicError): an.messages.batches.results(b.id)  # its first poll: still in progress, no results_url
        results = list(an.messages.batches.results(b.id))
        ended = an.messages.batches.retrieve(b.id)
    assert isinstance(b, anthropic.types.messages.MessageBatch) and b.id.startswith('msgbatch_') and b.processing_status == 'in_progress'
    assert b.request_counts.processing == 4 and b.results_url is None and b.expires_at > b.created_at
    assert ended.processing_status == 'ended' and ended.ended_at and ended.results_url.endswith(f'/v1/messages/batches/{b.id}/results')
    c = ended.request_counts
    assert (c.processing, c.succeeded, c.errored, c.expired, c.canceled) == (0, 2, 1, 1, 0)
    assert [r.custom_id for r in results][:4] == list('abcd') and len(results) == 5 and results[4].custom_id.startswith('unknown-')
    assert [r.result.type for r in results] == ['succeeded', 'errored', 'expired', 'succeeded', 'succeeded']
    assert results[0].result.message.model_dump() == anthropic.types.Message(**sync).model_dump()
    assert results[1].result.error.error.type == 'api_error' and results[1].result.error.type == 'error'
    assert [e['op'] for e in llm.batch_log] == ['create', 'poll', 'poll', 'results', 'poll']

def test_anthropic_list_cancel_malformed_and_expired_batches():
    with LoopbackLLM(batch_polls=0, expire_batches=[2], batch_fault=lambda b, i, c: 'malformed' if (b, i) == (3, 1) else None) as llm:
        _, an, _ = clients(llm)
        ids = [an.messages.batches.create(requests=[{'custom_id': f'{n}-{i}', 'params': message()} for i in range(3)]).id for n in range(4)]
        cancelled = an.messages.batches.cancel(ids[0])
        expired = [r.result.type for r in an.messages.batches.results(ids[1])]
        with pytest.raises(json.JSONDecodeError): list(an.messages.batches.results(ids[2]))
        page = an.messages.batches.list(limit=3)
        canceled = [r.result.type for r in an.messages.batches.results(ids[0])]
    assert cancelled.processing_status == 'ended' and cancelled.cancel_initiated_at and cancelled.request_counts.canceled == 3
    assert expired == ['succeeded', 'succeeded', 'expired'] and canceled == ['canceled'] * 3
    assert [b.id for b in page.data] == ids[:0:-1] and page.has_more and page.last_id == ids[1]

# ---- Gemini batch mode

SDK_ONLY = {'sdk_http_response', 'automatic_function_calling_history'}  # what the SDK adds to a sync reply

def gemini_requests(n, **config):
    return [{'contents': [{'role': 'user', 'parts': [{'text': f'Q: {Q}'}]}], 'metadata': {'key': f'k{i}'}, **({'config': config} if config else {})} for i in range(n)]

def test_gemini_inline_batch():
    fault = lambda b, i, c: {'k1': 429, 'k2': 'expired', 'k3': 'malformed', 'k4': 'unknown_id'}.get(c)
    with LoopbackLLM(batch_fault=fault, reasoning=think_aloud) as llm:
        _, _, g = clients(llm)
        sync = g.models.generate_content(model='gemini-x', contents=f'Q: {Q}', config=types.GenerateContentConfig(temperature=0, thinking_config=types.ThinkingConfig(include_thoughts=True)))
        job = g.batches.create(model='gemini-x', src=gemini_requests(5, temperature=0, thinking_config={'include_thoughts': True}), config={'display_name': 'arith'})
        states = [g.batches.get(name=job.name).state for _ in range(2)]
        done = g.batches.get(name=job.name)
        listed = list(g.batches.list())
    assert isinstance(job, types.BatchJob) and job.name.startswith('batches/') and job.display_name == 'arith' and job.model == 'models/gemini-x'
    assert [job.state, *states] == ['JOB_STATE_PENDING', 'JOB_STATE_RUNNING', 'JOB_STATE_SUCCEEDED'] and done.end_time
    got = done.dest.inlined_responses
    assert [r.metadata for r in got][:5] == [{'key': f'k{i}'} for i in range(5)] and len(got) == 6 and got[5].metadata['key'].startswith('unknown-')
    assert got[0].response.model_dump(exclude=SDK_ONLY) == sync.model_dump(exclude=SDK_ONLY) and got[0].response.candidates[0].content.parts[0].thought
    assert got[1].error.code == 429 and got[2].error.code == 4 and got[3].response is None and got[3].error is None and got[4].response.text == ANSWER
    assert [j.name for j in listed] == [job.name]

def test_gemini_cancel_expire_and_never_ending():
    with LoopbackLLM(batch_polls=None, expire_batches=[2]) as llm:
        _, _, g = clients(llm)
        a, b = (g.batches.create(model='gemini-x', src=gemini_requests(4)) for _ in range(2))
        assert g.batches.get(name=a.name).state == 'JOB_STATE_RUNNING'
        g.batches.cancel(name=a.name)
        llm.batch_polls = 0
        cancelled, expired = g.batches.get(name=a.name), g.batches.get(name=b.name)
        pager = g.batches.list(config={'page_size': 1})
        names = [j.name for j in pager]  # the second page is fetched here, following nextPageToken
    assert cancelled.state == 'JOB_STATE_CANCELLED' and cancelled.dest is None
    assert expired.state == 'JOB_STATE_EXPIRED' and expired.dest is None and len(llm.log) == 2
    assert pager.page_size == 1 and names == [b.name, a.name]
    assert [e['vendor'] for e in llm.batch_log] == ['gemini'] * len(llm.batch_log) and 'cancel' in [e['op'] for e in llm.batch_log]
