"""Chapter 6a: a causal student written as GGUF and read back by `transformers`' own GGUF loader, which rebuilds the
tokenizer from the file and undoes llama.cpp's layout: the same token ids and the same greedy answers."""
import json
import pytest
import torch
from conftest import SHARED, cli, ok, refused

def questions(n=50) -> list[str]:
    "CQA questions with their choices (letters, digits, punctuation), from ../shared."
    rows = [json.loads(l) for l in (SHARED/'data'/'cqa'/'cqa_test.json').read_text().splitlines()[:n]]
    return [r['question'] + ' ' + ', '.join(f'({k}) {c}' for k, c in zip('abcde', r['choices'])) for r in rows]

def greedy(model, tok, prompts, n=6) -> list[list[int]]:
    "Each prompt's greedy continuation in the chat template, `n` tokens."
    out = []
    for p in prompts:
        enc = tok.apply_chat_template([{'role': 'user', 'content': p}], add_generation_prompt=True, return_tensors='pt', return_dict=True)
        with torch.no_grad(): out.append(model.generate(**enc, max_new_tokens=n, do_sample=False)[0, enc['input_ids'].shape[1]:].tolist())
    return out

def read_back(folder, name):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval(), AutoTokenizer.from_pretrained(folder, gguf_file=name)

@pytest.mark.slow
def test_smollm2_round_trips_through_gguf(tmp_path, smollm2):
    "A real pretrained Llama (SmolLM2-135M-Instruct, its own BPE tokenizer): f32 gives all 50 greedy answers back, f16 at least 49 of 50, q8_0 at least 46."
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from distill_sbs.export import write_gguf
    model, tok = AutoModelForCausalLM.from_pretrained(smollm2).eval(), AutoTokenizer.from_pretrained(smollm2)
    prompts = questions()
    want = greedy(model, tok, prompts)
    write_gguf(model, tok, tmp_path/'f32.gguf', 'f32', eot_token='<|im_end|>')
    back, back_tok = read_back(tmp_path, 'f32.gguf')
    texts = prompts + ['12 + 345 = 357, and 1,000,000 is a million.', 'Tom has 3 apples.<|im_end|>']
    assert [back_tok(t)['input_ids'] for t in texts] == [tok(t)['input_ids'] for t in texts]
    assert back_tok.apply_chat_template([{'role': 'user', 'content': 'Hi'}], tokenize=False) == tok.apply_chat_template([{'role': 'user', 'content': 'Hi'}], tokenize=False)
    assert greedy(back, tok, prompts) == want
    del back
    for dtype, at_least in (('f16', 49), ('q8_0', 46)):  # SmolLM2 on these 50: f16 49, q8_0 47 (near-ties between two choices turn)
        write_gguf(model, tok, tmp_path/f'{dtype}.gguf', dtype, eot_token='<|im_end|>')
        rounded, _ = read_back(tmp_path, f'{dtype}.gguf')
        same = sum(a == b for a, b in zip(greedy(rounded, tok, prompts), want))
        assert same >= at_least, (dtype, same)
    assert (tmp_path/'q8_0.gguf').stat().st_size < 0.3 * (tmp_path/'f32.gguf').stat().st_size

GEMMA_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
                  "{{ m['content'] }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")

def gemma3_twin(texts, scaled=False):
    "A Gemma 3 of six layers (five sliding, one full; heads 256 wide; `scaled`: the full layer's positions scaled by 8, as from 4B up) with random weights, and a Gemma-style tokenizer learnt from `texts`: SentencePiece pieces, byte fallback, Gemma's chat template."
    from tokenizers import Tokenizer, models, normalizers, trainers
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, GemmaTokenizer
    bpe = Tokenizer(models.BPE(unk_token='<unk>', byte_fallback=True, fuse_unk=True))
    bpe.normalizer = normalizers.Replace(' ', '\u2581')
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=700, show_progress=False))
    learnt = json.loads(bpe.to_str())['model']
    specials = ['<pad>', '<eos>', '<bos>', '<unk>', '<mask>', '<start_of_turn>', '<end_of_turn>']
    vocab = {t: i for i, t in enumerate(specials + [f'<0x{b:02X}>' for b in range(256)] + sorted(learnt['vocab'], key=learnt['vocab'].get))}
    tok = GemmaTokenizer(vocab=vocab, merges=[tuple(m) for m in learnt['merges']])
    tok.add_special_tokens({'additional_special_tokens': specials[-2:]})
    tok.chat_template = GEMMA_TEMPLATE
    torch.manual_seed(0)
    rope = {'full_attention': {'rope_type': 'linear', 'factor': 8.0, 'rope_theta': 1e6} if scaled else {'rope_type': 'default', 'rope_theta': 1e6},
            'sliding_attention': {'rope_type': 'default', 'rope_theta': 1e4}}
    config = Gemma3TextConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=6, num_attention_heads=2, rope_parameters=rope,
                              num_key_value_heads=1, head_dim=256, max_position_embeddings=2048, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    return Gemma3ForCausalLM(config).eval(), tok

def llama_cpp_server(path, tmp_path):
    "llama.cpp's server (llama-cpp-python's, OpenAI's API) on `path`, on loopback: (process, openai client)."
    import openai, subprocess, sys
    from distill_sbs.serve import free_port, wait_for
    port, log = free_port(), open(tmp_path/'llama.log', 'w')
    server = subprocess.Popen([sys.executable, '-m', 'llama_cpp.server', '--model', path, '--host', '127.0.0.1', '--port', str(port),
                               '--n_ctx', '2048', '--n_threads', '2'], stdout=log, stderr=subprocess.STDOUT)
    try: wait_for(f'http://127.0.0.1:{port}/v1/models', proc=server, timeout=180)
    except Exception: server.terminate(); raise
    return server, openai.OpenAI(base_url=f'http://127.0.0.1:{port}/v1', api_key='unused', max_retries=0)

def llama_cpp_chat(client, prompt, n):
    "llama.cpp's greedy chat answer, `n` tokens: without the repeat penalty llama-cpp-python's server applies by default."
    return client.chat.completions.create(model='m', messages=[{'role': 'user', 'content': prompt}], temperature=0, max_tokens=n, extra_body={'repeat_penalty': 1.0})

@pytest.mark.slow
def test_a_gemma3_student_round_trips_and_llama_cpp_runs_it(tmp_path):
    "Gemma 3 (norms shifted by one, sliding and full layers with their own rope, SentencePiece pieces): transformers reads back the same ids and answers, and llama.cpp answers the same."
    pytest.importorskip('llama_cpp.server', reason='needs llama-cpp-python[server] (the dev extra builds it)')
    from distill_sbs.data import load_data
    from distill_sbs.export import write_gguf
    prompts = questions() if (SHARED/'data'/'cqa').exists() else list(load_data('arith', n_train=60, n_test=50)['test']['input'])
    model, tok = gemma3_twin(prompts)
    write_gguf(model, tok, tmp_path/'gemma3.gguf', 'f32', eot_token='<end_of_turn>')
    back, back_tok = read_back(tmp_path, 'gemma3.gguf')
    texts = prompts + ['12 + 345 = 357, and 1,000,000 is a million.', 'Where would you find a  café? ü 😀 \n\n']
    assert [back_tok(t)['input_ids'] for t in texts] == [tok(t)['input_ids'] for t in texts]
    want = greedy(model, tok, prompts[:10], n=8)
    assert greedy(back, tok, prompts[:10], n=8) == want
    server, client = llama_cpp_server(tmp_path/'gemma3.gguf', tmp_path)
    try: said = [llama_cpp_chat(client, p, 8) for p in prompts[:10]]
    finally: server.terminate(); server.wait(30)
    assert [r.usage.prompt_tokens for r in said] == [len(tok.apply_chat_template([{'role': 'user', 'content': p}], add_generation_prompt=True, return_dict=True)['input_ids']) for p in prompts[:10]]
    texts = [tok.decode(w, skip_special_tokens=True) for w in want]
    whole = [(r.choices[0].message.content, t) for r, t in zip(said, texts) if '\ufffd' not in t]  # random weights write stray bytes, which the two decode differently
    assert len(whole) >= 5 and all(a == b for a, b in whole), whole
    from llama_cpp import Llama  # Gemma 3 from 4B up: the full layers' positions scaled linearly, which llama.cpp reads from the file
    scaled, tok = gemma3_twin(prompts, scaled=True)
    write_gguf(scaled, tok, tmp_path/'scaled.gguf', 'f32', eot_token='<end_of_turn>')
    llm = Llama(model_path=str(tmp_path/'scaled.gguf'), n_ctx=1024, n_threads=2, verbose=False)
    said = [llm.create_chat_completion([{'role': 'user', 'content': p}], temperature=0, max_tokens=8, repeat_penalty=1.0)['choices'][0]['message']['content'] for p in prompts[:10]]
    whole = [(a, t) for a, t in zip(said, (tok.decode(w, skip_special_tokens=True) for w in greedy(scaled, tok, prompts[:10], n=8))) if '\ufffd' not in t]
    unscaled = [tok.decode(w, skip_special_tokens=True) for w in greedy(model, tok, prompts[:10], n=8)]
    assert len(whole) >= 5 and all(a == b for a, b in whole), whole
    assert sum(a != b for a, b in zip(said, unscaled)) >= 1  # the scaling changes the answers: the file carries it

@pytest.mark.slow
def test_export_command_writes_a_qwen2_student_llama_cpp_reads(tmp_path, qwen_twin):
    "`distill-sbs export` on a saved Qwen2 student with the real Qwen2.5 tokenizer: the file holds the chat template and the end-of-turn id."
    import gguf
    res = ok(cli('export', '--run', qwen_twin, '--dtype', 'f32', '--out', tmp_path/'q.gguf'))
    assert 'wrote' in res.stdout and 'llama-server -m' in res.stdout
    r = gguf.GGUFReader(tmp_path/'q.gguf')
    fields = {k: f.contents() for k, f in r.fields.items() if not k.startswith('tokenizer.ggml.') or k.endswith(('_id', '.pre', '.model'))}
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(qwen_twin)
    assert fields['general.architecture'] == 'qwen2' and fields['tokenizer.ggml.pre'] == 'qwen2' and fields['tokenizer.ggml.model'] == 'gpt2'
    assert fields['tokenizer.ggml.eot_token_id'] == tok.convert_tokens_to_ids('<|im_end|>') and '<|im_start|>' in fields['tokenizer.chat_template']
    back, back_tok = read_back(tmp_path, 'q.gguf')
    prompts = questions(20)
    assert [back_tok(t)['input_ids'] for t in prompts] == [tok(t)['input_ids'] for t in prompts]
    model = AutoModelForCausalLM.from_pretrained(qwen_twin).eval()
    assert greedy(back, tok, prompts, n=4) == greedy(model, tok, prompts, n=4)

def test_what_gguf_cannot_hold_is_refused_in_one_line(tmp_path, causal_run, tiny_run):
    refused(cli('export', '--run', causal_run, '--out', tmp_path/'c.gguf'), 'GGUF export writes BPE tokenizers, byte-level', 'export')
    refused(cli("export", "--run", tiny_run, '--out', tmp_path/'t.gguf'), 'encoder-decoder (seq2seq)', 'export')
    refused(cli('export', '--run', tmp_path/'nothing'), "no config.json", 'export')
    (tmp_path/'adapter').mkdir(); (tmp_path/'adapter'/'adapter_config.json').write_text('{}')  # a LoRA run exports its merged model, not its adapter
    refused(cli('export', '--run', tmp_path/'adapter'), "a LoRA adapter only", 'export')
    assert not list(tmp_path.glob('*.gguf')) and not list(tmp_path.glob('.*'))

@pytest.mark.slow
def test_llama_cpp_serves_the_export_as_transformers_answers(tmp_path, smollm2):
    "The real llama.cpp (llama-cpp-python's server, OpenAI's API) loads `distill-sbs export`'s file, reads its chat template and end of turn, and answers as transformers does."
    pytest.importorskip('llama_cpp.server', reason='needs llama-cpp-python[server] (the dev extra builds it)')
    from transformers import AutoModelForCausalLM, AutoTokenizer
    ok(cli('export', '--run', smollm2, '--dtype', 'f32', '--out', tmp_path/'smollm2.gguf'))
    server, client = llama_cpp_server(tmp_path/'smollm2.gguf', tmp_path)
    try:
        model, tok = AutoModelForCausalLM.from_pretrained(smollm2).eval(), AutoTokenizer.from_pretrained(smollm2)
        prompts = questions(12)
        want = [tok.decode(ids, skip_special_tokens=True) for ids in greedy(model, tok, prompts, n=16)]
        said = [llama_cpp_chat(client, p, 16) for p in prompts]
        assert [r.usage.prompt_tokens for r in said] == [len(tok.apply_chat_template([{'role': 'user', 'content': p}], add_generation_prompt=True, return_dict=True)['input_ids']) for p in prompts]
        same = sum(r.choices[0].message.content == w for r, w in zip(said, want))
        assert same == len(prompts), [(r.choices[0].message.content, w) for r, w in zip(said, want)]
        assert any(r.choices[0].finish_reason == 'stop' for r in said) and not any('<|im_end|>' in r.choices[0].message.content for r in said)
    finally:
        server.terminate(); server.wait(30)
