"""Chapter 6 over real HTTP: `distill-sbs serve` in a subprocess, set up with Vertex AI's `AIP_*` variables, and
`distill-sbs deploy --dry_run`."""
import json, os, subprocess
from concurrent.futures import ThreadPoolExecutor
import httpx2 as httpx
import pytest
from conftest import run_cli
from distill_sbs.serve import free_port, wait_for
from distill_sbs.multitask import tiny_student

QS = [f'Ana has {a} apples. Ana buys {b} more and then gives away 1. How many apples does Ana have now?' for a in (2, 3) for b in (1, 2, 3)]

@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp('student')
    model, tok = tiny_student(texts=QS)
    model.save_pretrained(d); tok.save_pretrained(d)
    (d/'train_config.json').write_text(json.dumps({'model_type': 'task_prefix'}))
    return d

@pytest.fixture(scope='module')
def server(model_dir):
    port = free_port()
    env = {**os.environ, 'AIP_HTTP_PORT': str(port), 'AIP_HEALTH_ROUTE': '/health-check', 'AIP_PREDICT_ROUTE': '/v1/models/m:predict',
           'AIP_STORAGE_URI': str(model_dir), 'DSS_LOAD_DELAY': '3', 'DSS_MAX_INSTANCES': '16', 'DSS_MAX_INPUT_CHARS': '300',
           'DSS_DTYPE': 'float32'}  # exact: random weights make near-ties that bfloat16 batches could break differently
    proc = subprocess.Popen(['distill-sbs', 'serve', '--host', '127.0.0.1'], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f'http://127.0.0.1:{port}'
    try:
        loading = wait_for(url + '/health-check', 503, proc=proc)  # DSS_LOAD_DELAY keeps it loading for 3 s
        ready = wait_for(url + '/health-check', 200, proc=proc)
    except RuntimeError as e: pytest.fail(f'{e}:\n{proc.stdout.read()}')
    yield url, (loading, ready)
    proc.terminate(); proc.wait(30)

def predict(url, body, **kw):
    return httpx.post(url + '/v1/models/m:predict', timeout=60, **({'json': body} if not isinstance(body, bytes) else
                      {'content': body, 'headers': {'content-type': 'application/json'}}), **kw)

def test_health_answers_only_once_loaded(server):
    url, (loading, ready) = server
    assert loading == {'status': 'loading'} and ready['status'] == 'ready' and ready['prefixed'] and ready['dtype'] == 'float32'
    assert httpx.get(url + '/health-check').json()['status'] == 'ready'

def test_a_batch_of_instances_matches_one_at_a_time(server):
    url, _ = server
    r = predict(url, {'instances': QS})
    assert r.status_code == 200
    preds = r.json()['predictions']
    assert len(preds) == len(QS) and all(set(p) == {'answer'} for p in preds)
    assert [p['answer'] for p in preds] == [predict(url, {'instances': [{'input': q}]}).json()['predictions'][0]['answer'] for q in QS]

def test_bfloat16_weights(model_dir):
    import torch
    from distill_sbs.hardware import native_bf16
    from distill_sbs.inference import load_run
    served = load_run(str(model_dir), 'bfloat16')
    assert served.model.dtype == torch.bfloat16 and len(served.answer(QS[:3], 'predict', 4)) == 3
    assert load_run(str(model_dir), 'auto').dtype == ('bfloat16' if native_bf16('cpu') else 'float32')

def test_rationales_when_asked(server):
    url, _ = server
    preds = predict(url, {'instances': QS[:2], 'parameters': {'rationale': True}}).json()['predictions']
    assert len(preds) == 2 and all(set(p) == {'answer', 'rationale'} and isinstance(p['rationale'], str) for p in preds)

def test_concurrent_clients_get_their_own_answers(server):
    url, _ = server
    alone = {q: predict(url, {'instances': [q]}).json()['predictions'][0]['answer'] for q in QS}
    before = httpx.get(url + '/health-check').json()
    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(lambda q: (q, predict(url, {'instances': [q]})), QS * 4))
    assert all(r.status_code == 200 and r.json()['predictions'][0]['answer'] == alone[q] for q, r in got)
    after = httpx.get(url + '/health-check').json()
    assert after['texts'] - before['texts'] == len(QS) * 4
    assert after['generates'] - before['generates'] < len(QS) * 4  # some requests shared a generate

@pytest.mark.parametrize('body,status,msg', [
    (b'{"instances": [', 400, 'not valid JSON'),
    ({'inputs': ['q']}, 400, 'no "instances"'),
    ({'instances': 'q'}, 400, 'non-empty list'),
    ({'instances': [{'text': 'q'}]}, 400, 'instance 0: expected a non-empty text'),
    ({'instances': ['q'], 'parameters': {'rationale': 1}}, 400, 'true or false'),
    ({'instances': ['q'] * 17}, 413, '17 instances; at most 16'),
    ({'instances': ['q', 'x' * 301]}, 413, 'instance 1: 301 characters; at most 300'),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(server, body, status, msg):
    url, _ = server
    r = predict(url, body)
    assert r.status_code == status and msg in r.json()['error']
    assert predict(url, {'instances': ['still there?']}).status_code == 200

def test_serve_without_a_model_is_one_line(tmp_path):
    res = run_cli('serve', env={'AIP_STORAGE_URI': ''})
    assert res.returncode == 2 and 'AIP_STORAGE_URI' in res.stderr
    res = run_cli('serve', '--model_dir', str(tmp_path), '--dtype', 'float16')
    assert res.returncode == 2 and 'T5 overflows in float16' in res.stderr and len(res.stderr.strip().splitlines()) == 1

def test_deploy_dry_run_names_every_resource(model_dir):
    res = run_cli('deploy', '--model_dir', model_dir, '--project', 'proj', '--region', 'europe-west4', '--bucket', 'gs://bkt/students',
                  '--image', 'europe-west4-docker.pkg.dev/proj/repo/serve:1', '--machine_type', 'g2-standard-8',
                  '--accelerator_type', 'NVIDIA_L4', '--dry_run')
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for s in ['gs://bkt/students/distill-sbs-student/config.json', 'europe-west4-docker.pkg.dev/proj/repo/serve:1',
              '"serving_container_predict_route": "/predict"', '"serving_container_health_route": "/health"',
              '"serving_container_ports": [8080]', '"machine_type": "g2-standard-8"', '"accelerator_type": "NVIDIA_L4"',
              'would call Endpoint.predict']:
        assert s in out, s
    assert 'calling ' not in out
    res = run_cli('deploy', '--delete', '123', '--project', 'proj', '--dry_run')
    assert res.returncode == 0 and 'would call Endpoint.undeploy_all' in res.stdout
    res = run_cli('deploy', '--model_dir', model_dir, '--project', 'proj', '--dry_run')
    assert res.returncode == 2 and '--bucket, --image' in res.stderr
