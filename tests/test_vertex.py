"""Chapters 7 and 7a against the real Google Cloud SDKs: `train --submit`, `sweep --submit`, `deploy` and `pipeline --start` run
in this process through `google-cloud-aiplatform` and `google-cloud-storage`, with only the network replaced (the service
clients' RPC methods, Cloud Storage's upload and bucket check, and the credentials lookup). The requests checked are the ones
the SDK built; a dry run must print exactly those."""
import json
from types import SimpleNamespace
from unittest import mock

import pytest
from conftest import ROOT

aiplatform = pytest.importorskip('google.cloud.aiplatform', reason="the Vertex AI SDK: pip install -e '.[dev]'")
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.aiplatform_v1 import types as t
from google.cloud.aiplatform_v1.services.endpoint_service import EndpointServiceClient
from google.cloud.aiplatform_v1.services.job_service import JobServiceClient
from google.cloud.aiplatform_v1.services.model_service import ModelServiceClient
from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
from google.cloud.aiplatform_v1.services.prediction_service import PredictionServiceClient
from google.protobuf import json_format

from distill_sbs.cli import main

IMAGE = 'us-docker.pkg.dev/my-project/distill-sbs/train:1'
SA = 'trainer@my-project.iam.gserviceaccount.com'
JOB = ['--submit', '--project', 'my-project', '--image', IMAGE]

def done(result, name='projects/my-project/locations/us-central1/operations/9'):
    "A finished long-running operation, as the SDK reads one."
    return SimpleNamespace(operation=SimpleNamespace(name=name), result=lambda timeout=None: result, done=lambda: True)

def as_dict(message): return json_format.MessageToDict(type(message).pb(message))

class Network:
    "What Vertex AI and Cloud Storage would answer; each request the SDK sends is kept, as the SDK built it."
    def __init__(self): self.sent, self.uploads, self.endpoint = [], [], None

    def keep(self, kind, **fields):
        req = getattr(t, kind)(**{k: v for k, v in fields.items() if v is not None})
        self.sent.append(req)
        return req

    def of(self, kind) -> list: return [as_dict(r) for r in self.sent if type(r).__name__ == kind]

@pytest.fixture
def network(monkeypatch):
    net = Network()
    monkeypatch.setattr('google.auth.default', lambda *a, **k: (AnonymousCredentials(), 'my-project'))
    def create_custom_job(self, request=None, *, parent=None, custom_job=None, **_):
        req = net.keep('CreateCustomJobRequest', parent=parent, custom_job=custom_job)
        return t.CustomJob(req.custom_job, name=f'{parent}/customJobs/42', state='JOB_STATE_PENDING')
    def create_pipeline_job(self, request=None, *, parent=None, pipeline_job=None, pipeline_job_id=None, **_):
        req = net.keep('CreatePipelineJobRequest', parent=parent, pipeline_job=pipeline_job, pipeline_job_id=pipeline_job_id)
        return t.PipelineJob(req.pipeline_job, name=f'{parent}/pipelineJobs/{pipeline_job_id}', state='PIPELINE_STATE_PENDING')
    def upload_model(self, request=None, **_):
        net.sent.append(t.UploadModelRequest(request))
        return done(t.UploadModelResponse(model=f'{request.parent}/models/77', model_version_id='1'))
    def get_model(self, request=None, *, name=None, **_):
        return t.Model(name=name.split('@')[0], version_id='1', supported_deployment_resources_types=['DEDICATED_RESOURCES'])
    def create_endpoint(self, request=None, *, parent=None, endpoint=None, endpoint_id=None, **_):
        net.keep('CreateEndpointRequest', parent=parent, endpoint=endpoint, endpoint_id=endpoint_id)
        net.endpoint = t.Endpoint(endpoint, name=f'{parent}/endpoints/55')
        return done(net.endpoint)
    def get_endpoint(self, request=None, *, name=None, **_):
        return net.endpoint if net.endpoint and net.endpoint.name == name else t.Endpoint(
            name=name, deployed_models=[t.DeployedModel(id='3', model='projects/my-project/locations/us-central1/models/77')], traffic_split={'3': 100})
    def deploy_model(self, request=None, *, endpoint=None, deployed_model=None, traffic_split=None, **_):
        net.keep('DeployModelRequest', endpoint=endpoint, deployed_model=deployed_model, traffic_split=traffic_split)
        return done(t.DeployModelResponse(deployed_model=t.DeployedModel(deployed_model, id='3')))
    def predict(self, request=None, *, endpoint=None, instances=None, parameters=None, **_):
        req = t.PredictRequest(endpoint=endpoint); req.instances.extend(instances); req.parameters = parameters
        net.sent.append(req)
        resp = t.PredictResponse(deployed_model_id='3'); resp.predictions.extend([{'answer': '4'}])
        return resp
    def undeploy_model(self, request=None, *, endpoint=None, deployed_model_id=None, traffic_split=None, **_):
        net.keep('UndeployModelRequest', endpoint=endpoint, deployed_model_id=deployed_model_id, traffic_split=traffic_split)
        return done(t.UndeployModelResponse())
    def delete_endpoint(self, request=None, *, name=None, **_): net.keep('DeleteEndpointRequest', name=name); return done(None)
    def delete_model(self, request=None, *, name=None, **_): net.keep('DeleteModelRequest', name=name); return done(None)
    for cls, f in [(JobServiceClient, create_custom_job), (PipelineServiceClient, create_pipeline_job), (ModelServiceClient, upload_model),
                   (ModelServiceClient, get_model), (ModelServiceClient, delete_model), (EndpointServiceClient, create_endpoint),
                   (EndpointServiceClient, get_endpoint), (EndpointServiceClient, deploy_model), (EndpointServiceClient, undeploy_model),
                   (EndpointServiceClient, delete_endpoint), (PredictionServiceClient, predict)]:
        monkeypatch.setattr(cls, f.__name__, f)
    monkeypatch.setattr(storage.Blob, 'upload_from_filename', lambda blob, filename, **_: net.uploads.append((f'gs://{blob.bucket.name}/{blob.name}', open(filename, 'rb').read().decode('utf-8', 'replace'))))
    monkeypatch.setattr(storage.Bucket, 'exists', lambda bucket, *a, **k: True)
    monkeypatch.setattr('google.cloud.aiplatform.utils.gcs_utils._verify_bucket_ownership', lambda *a, **k: True, raising=False)
    return net

def run(capsys, *argv):
    "`distill-sbs ARGV` in this process: (exit status, stdout, stderr)."
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    return status, out.out, out.err

def printed(stdout, kind) -> list:
    "The requests a dry run printed, of one kind."
    return [json.loads(l.split(' ', 3)[3]) for l in stdout.splitlines() if l.startswith(f'would send {kind} ')]

# ---- custom jobs (chapter 7a)

def test_a_training_job_on_two_a3_machines_as_a_service_account(network, capsys):
    argv = ['train', '--from_pretrained', 'google/flan-t5-base', '--dataset', 'cqa', '--data_dir', 'gs://b/data', '--max_steps', 100,
            '--output_dir', 'gs://b/runs/cqa', *JOB, '--machine_type', 'a3-highgpu-8g', '--replica_count', 2, '--service_account', SA,
            '--timeout_hours', 12]
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    (req,) = network.of('CreateCustomJobRequest')
    assert req['parent'] == 'projects/my-project/locations/us-central1'
    job = req['customJob']
    assert job['displayName'] == 'distill-sbs' and job['labels'] == {'distill-sbs': 'train'}
    spec = job['jobSpec']
    assert spec['serviceAccount'] == SA and spec['baseOutputDirectory'] == {'outputUriPrefix': 'gs://b/runs/cqa'}
    assert spec['scheduling'] == {'timeout': '43200s', 'restartJobOnWorkerRestart': True}  # across machines, torchrun needs them all
    assert [p['replicaCount'] for p in spec['workerPoolSpecs']] == ['1', '1']
    for pool in spec['workerPoolSpecs']:
        assert pool['machineSpec'] == {'machineType': 'a3-highgpu-8g', 'acceleratorType': 'NVIDIA_H100_80GB', 'acceleratorCount': 8}
        assert pool['diskSpec'] == {'bootDiskType': 'pd-ssd', 'bootDiskSizeGb': 100}
        c = pool['containerSpec']
        assert c['imageUri'] == IMAGE and c['command'] == ['distill-sbs', 'launch']
        assert c['args'] == ['train', '--from_pretrained', 'google/flan-t5-base', '--dataset', 'cqa', '--data_dir', '/gcs/b/data', '--max_steps', '100',
                             '--output_dir', '/gcs/b/runs/cqa']
    assert 'projects/my-project/locations/us-central1/customJobs/42' in out
    status, dry, err = run(capsys, *argv, '--dry_run')  # the same SDK calls, answered here: the same request, printed
    assert status == 0, err
    assert printed(dry, 'CreateCustomJobRequest') == [req] and network.of('CreateCustomJobRequest') == [req]

def test_a_sweep_job_uploads_its_grid_then_runs_on_several_machines(network, capsys):
    status, out, err = run(capsys, 'sweep', '--fractions', '0.25,1', '--students', 'google/flan-t5-small,google/flan-t5-base', '--max_steps', 50,
                           '--output_dir', 'gs://b/sweeps/one', *JOB, '--machine_type', 'n1-standard-8', '--accelerator_type', 'NVIDIA_TESLA_T4',
                           '--accelerator_count', 2, '--replica_count', 3)
    assert status == 0, err
    ((uri, text),) = network.uploads
    assert uri == 'gs://b/sweeps/one/sweep.yaml'
    import yaml
    grid = yaml.safe_load(text)
    assert grid['output_dir'] == '/gcs/b/sweeps/one' and grid['fractions'] == [0.25, 1.0] and grid['max_steps'] == 50
    (req,) = network.of('CreateCustomJobRequest')
    spec = req['customJob']['jobSpec']
    assert 'scheduling' not in spec and 'serviceAccount' not in spec  # a sweep's machines each resume their own cells: no joint restart
    assert [p['replicaCount'] for p in spec['workerPoolSpecs']] == ['1', '2']
    for pool in spec['workerPoolSpecs']:
        assert pool['machineSpec'] == {'machineType': 'n1-standard-8', 'acceleratorType': 'NVIDIA_TESLA_T4', 'acceleratorCount': 2}
        assert pool['containerSpec']['args'] == ['sweep', '--grid', '/gcs/b/sweeps/one/sweep.yaml']

BAD_JOBS = [
    (['--machine_type', 'a2-highgpu-3g'], 'that family comes as a2-highgpu-1g, a2-highgpu-2g, a2-highgpu-4g, a2-highgpu-8g'),
    (['--machine_type', 'a3-megagpu-1g'], 'that family comes as a3-megagpu-8g'),
    (['--machine_type', 'n1-standard-8', '--accelerator_type', 'NVIDIA_TESLA_T4', '--accelerator_count', 8], 'n1 machines take 1 or 2 or 4 x NVIDIA_TESLA_T4'),
    (['--machine_type', 'n1-standard-4', '--accelerator_type', 'NVIDIA_L4'], 'NVIDIA_L4 does not go on n1 machines'),
    (['--machine_type', 'a2-highgpu-1g', '--accelerator_type', 'NVIDIA_L4'], 'carries 1 x NVIDIA_TESLA_A100, not --accelerator_type NVIDIA_L4'),
    (['--machine_type', 'g2-standard-24', '--accelerator_count', 1], 'carries 2 x NVIDIA_L4: --accelerator_count 2, not 1'),
    (['--machine_type', 'e2-standard-8', '--accelerator_type', 'NVIDIA_TESLA_T4'], 'takes no GPU'),
    (['--machine_type', 'n1-supermem-8'], "--machine_type 'n1-supermem-8': not a Vertex AI machine type; choose from a2-highgpu-*"),
    (['--machine_type', 'n1-standard-16', '--accelerator_type', 'NVIDIA_TESLA_V100'], 'with 1 x NVIDIA_TESLA_V100 an n1 machine has at most 12'),
    (['--machine_type', 'n1-standard-8', '--accelerator_type', 'NVIDIA_TESLA_P100'], 'a Pascal GPU, which the project\'s image'),
    (['--service_account', 'trainer'], "--service_account 'trainer': not a service account's email"),
    (['--machine_type', 'n1-standard-3', '--accelerator_type', 'NVIDIA_TESLA_T4'], "that family comes as n1-standard-1, n1-standard-2, n1-standard-4"),
    (['--machine_type', 'e2-standard-64'], "that family comes as e2-standard-2, e2-standard-4"),
    (['--region', 'us-central'], "--region 'us-central': not a Vertex AI region"),
    (['--boot_disk_gb', 50], '--boot_disk_gb 50: Vertex AI takes 100 to 64000 GB'),
    (['--replica_count', 0], '--replica_count must be at least 1'),
    (['--timeout_hours', -1], '--timeout_hours must be above 0'),
]

@pytest.mark.parametrize('command', ['train', 'sweep'])
@pytest.mark.parametrize('flags, says', BAD_JOBS, ids=[' '.join(map(str, f)) for f, _ in BAD_JOBS])
def test_a_bad_job_is_one_line_before_anything_is_uploaded(network, capsys, command, flags, says):
    status, out, err = run(capsys, command, '--output_dir', 'gs://b/r', *JOB, *flags)
    assert status == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert network.sent == [] and network.uploads == []

def test_a_cloud_job_refuses_local_folders(network, capsys, tmp_path):
    status, _, err = run(capsys, 'sweep', '--output_dir', tmp_path/'local', *JOB)
    assert status == 2 and 'a cloud job writes to Cloud Storage; give a gs://bucket/folder' in err
    status, _, err = run(capsys, 'train', '--dataset', 'generic', '--data_dir', tmp_path, '--output_dir', 'gs://b/r', *JOB)
    assert status == 2 and 'a local path the job cannot read' in err
    assert network.sent == [] and network.uploads == []

def test_every_gpu_in_the_table_is_one_the_sdk_knows():
    "An accelerator the installed SDK does not know crashes `CustomJob(...)` and `Model.deploy`; the extras' floor (1.93) knows them all."
    from distill_sbs.vertex import ACCELERATORS
    missing = set(ACCELERATORS) - {e.name for e in t.AcceleratorType}
    assert not missing, f'google-cloud-aiplatform {aiplatform.__version__} lacks {sorted(missing)}'

def test_every_gpu_machine_in_the_table_goes_through_the_sdk(network, capsys):
    "Each GPU machine of the table, as a job and as a deployment, built and sent by the SDK with the GPUs it carries."
    from distill_sbs.vertex import GPU_MACHINES
    for machine_type, (gpu, n) in GPU_MACHINES.items():
        status, _, err = run(capsys, 'train', '--output_dir', 'gs://b/r', *JOB, '--machine_type', machine_type)
        assert status == 0, (machine_type, err)
        assert network.of('CreateCustomJobRequest')[-1]['customJob']['jobSpec']['workerPoolSpecs'][0]['machineSpec'] == {
            'machineType': machine_type, 'acceleratorType': gpu, 'acceleratorCount': n}
        status, _, err = run(capsys, 'deploy', '--model_dir', 'gs://b/m', '--project', 'my-project', '--image', 'serve:1', '--machine_type', machine_type)
        assert status == 0, (machine_type, err)
        assert network.of('DeployModelRequest')[-1]['deployedModel']['dedicatedResources']['machineSpec']['acceleratorCount'] == n

def test_a_local_config_file_is_refused_before_anything_is_sent(network, capsys, tmp_path):
    (tmp_path/'c.yaml').write_text('max_steps: 5\n')
    status, _, err = run(capsys, 'train', '--config', tmp_path/'c.yaml', '--output_dir', 'gs://b/r', *JOB)
    assert status == 2 and 'a file on this machine the job cannot read' in err and network.sent == []

def test_a_refusal_from_google_cloud_is_one_line(network, capsys, monkeypatch):
    from google.api_core import exceptions
    def refuse(self, *a, **k): raise exceptions.PermissionDenied('Permission aiplatform.customJobs.create denied on resource project my-project.\nmore detail')
    monkeypatch.setattr(JobServiceClient, 'create_custom_job', refuse)
    status, _, err = run(capsys, 'train', '--output_dir', 'gs://b/r', *JOB)
    assert status == 2 and err.strip() == 'distill-sbs train: error: Google Cloud refused: 403 Permission aiplatform.customJobs.create denied on resource project my-project.'

def test_a_real_run_after_a_dry_run_uses_the_real_credentials(network, capsys, monkeypatch):
    "The SDK keeps the credentials it was last given: a dry run's anonymous ones must not carry over to a real run in the same process."
    real = AnonymousCredentials()
    monkeypatch.setattr('google.auth.default', lambda *a, **k: (real, 'my-project'))
    assert run(capsys, 'train', '--output_dir', 'gs://b/r', *JOB, '--dry_run')[0] == 0
    assert run(capsys, 'train', '--output_dir', 'gs://b/r', *JOB)[0] == 0
    assert aiplatform.initializer.global_config.credentials is real

def test_no_credentials_is_one_line(monkeypatch, capsys):
    import google.auth
    def missing(*a, **k): raise google.auth.exceptions.DefaultCredentialsError('Your default credentials were not found.')
    monkeypatch.setattr('google.auth.default', missing)
    status, _, err = run(capsys, 'train', '--output_dir', 'gs://b/r', *JOB)
    assert status == 2 and 'no Google Cloud credentials: run `gcloud auth application-default login`' in err and len(err.strip().splitlines()) == 1

def test_launch_reads_the_cluster_of_a_vertex_job():
    from distill_sbs.jobs import launch_argv
    spec = lambda kind, i: json.dumps({'cluster': {'workerpool0': ['host0:2222'], 'workerpool1': ['host1:2222', 'host2:2222']}, 'task': {'type': kind, 'index': i}})
    assert launch_argv(['train', '--max_steps', '9'], spec('workerpool0', 0), 8) == [
        'torchrun', '--nnodes=3', '--node_rank=0', '--nproc_per_node=8', '--master_addr=host0', '--master_port=2222', '--no-python',
        'distill-sbs', 'train', '--max_steps', '9']
    assert launch_argv(['train'], spec('workerpool1', 1), 8)[2] == '--node_rank=2'
    assert launch_argv(['sweep', '--grid', 'g.yaml'], spec('workerpool1', 0), 2) == ['distill-sbs', 'sweep', '--grid', 'g.yaml', '--node', '1', '--nodes', '3']
    assert launch_argv(['sweep', '--grid', 'g.yaml'], None, 4) == ['distill-sbs', 'sweep', '--grid', 'g.yaml']  # one machine: the sweep starts its workers
    assert launch_argv(['train'], None, 1) == ['distill-sbs', 'train']

# ---- deployment (chapter 7)

@pytest.fixture
def model_dir(tmp_path):
    "A trained run's folder as deploy reads it: its files, and a checkpoint that is not copied."
    d = tmp_path/'run'
    (d/'checkpoint-5').mkdir(parents=True)
    for f in ('config.json', 'model.safetensors', 'tokenizer.json', 'checkpoint-5/model.safetensors'): (d/f).write_text('{}')
    return d

def test_deploy_sends_what_the_sdk_builds_and_writes_the_names(network, capsys, model_dir, tmp_path):
    argv = ['deploy', '--model_dir', model_dir, '--project', 'my-project', '--bucket', 'gs://bkt/students', '--image', 'serve:1',
            '--machine_type', 'a2-highgpu-1g', '--endpoint_name_file', tmp_path/'endpoint', '--model_name_file', tmp_path/'model']
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    assert sorted(u for u, _ in network.uploads) == [f'gs://bkt/students/distill-sbs-student/{f}' for f in ('config.json', 'model.safetensors', 'tokenizer.json')]
    (up,) = network.of('UploadModelRequest')
    assert up['model']['artifactUri'] == 'gs://bkt/students/distill-sbs-student'
    assert up['model']['containerSpec'] == {'imageUri': 'serve:1', 'ports': [{'containerPort': 8080}], 'predictRoute': '/predict', 'healthRoute': '/health'}
    (dep,) = network.of('DeployModelRequest')
    assert dep['endpoint'] == 'projects/my-project/locations/us-central1/endpoints/55' and dep['trafficSplit'] == {'0': 100}
    assert dep['deployedModel']['dedicatedResources'] == {'machineSpec': {'machineType': 'a2-highgpu-1g', 'acceleratorType': 'NVIDIA_TESLA_A100',
                                                                          'acceleratorCount': 1}, 'minReplicaCount': 1, 'maxReplicaCount': 1}
    (pred,) = network.of('PredictRequest')
    assert pred['parameters'] == {'rationale': True} and len(pred['instances']) == 1
    assert (tmp_path/'endpoint').read_text() == 'projects/my-project/locations/us-central1/endpoints/55'
    assert (tmp_path/'model').read_text() == 'projects/my-project/locations/us-central1/models/77'
    real = {k: network.of(k) for k in ('UploadModelRequest', 'CreateEndpointRequest', 'DeployModelRequest', 'PredictRequest')}
    status, dry, err = run(capsys, *argv[:-4], '--dry_run')
    assert status == 0, err
    dry_sent = {k: printed(dry, k) for k in real}
    dry_sent['DeployModelRequest'][0]['endpoint'] = real['DeployModelRequest'][0]['endpoint']  # names Vertex AI gives differ
    dry_sent['PredictRequest'][0]['endpoint'] = real['PredictRequest'][0]['endpoint']
    dry_sent['DeployModelRequest'][0]['deployedModel']['model'] = real['DeployModelRequest'][0]['deployedModel']['model']
    assert dry_sent == real

def test_a_causal_student_deployed_with_vertex_ais_vllm_container(network, capsys, qwen_twin, tmp_path):
    "--engine vllm: the prebuilt vLLM image with its arguments, on a GPU machine from the table, asked through /generate; the dry run prints the same requests."
    import shutil
    from distill_sbs.vertex import VLLM_IMAGE
    shutil.copytree(qwen_twin, tmp_path/'student')
    argv = ['deploy', '--model_dir', tmp_path/'student', '--project', 'my-project', '--bucket', 'gs://bkt/students', '--engine', 'vllm',
            '--machine_type', 'g2-standard-8', '--max_model_len', 2048, '--dtype', 'bfloat16', '--gpu_memory_utilization', 0.85]
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    (up,) = network.of('UploadModelRequest')
    spec, where = up['model']['containerSpec'], 'gs://bkt/students/distill-sbs-student'
    assert spec['imageUri'] == VLLM_IMAGE and spec['command'] == ['python', '-m', 'vllm.entrypoints.api_server']
    assert spec['args'] == ['--host=0.0.0.0', '--port=8080', f'--model={where}', '--tensor-parallel-size=1', '--max-model-len=2048',
                            '--dtype=bfloat16', '--gpu-memory-utilization=0.85', '--disable-log-stats']
    assert (spec['predictRoute'], spec['healthRoute'], spec['ports']) == ('/generate', '/ping', [{'containerPort': 8080}])
    assert {e['name']: e['value'] for e in spec['env']} == {'MODEL_ID': where, 'DEPLOY_SOURCE': 'distill-sbs'}
    assert spec['sharedMemorySizeMb'] == str(16 * 1024) and up['model']['artifactUri'] == where
    (dep,) = network.of('DeployModelRequest')
    assert dep['deployedModel']['dedicatedResources']['machineSpec'] == {'machineType': 'g2-standard-8', 'acceleratorType': 'NVIDIA_L4', 'acceleratorCount': 1}
    (pred,) = network.of('PredictRequest')
    (inst,) = pred['instances']
    assert inst['prompt'].startswith('<|im_start|>') and inst['prompt'].endswith('<|im_start|>assistant\n') and inst['temperature'] == 0 and pred.get('parameters') is None
    real = {k: network.of(k) for k in ('UploadModelRequest', 'PredictRequest')}
    real['PredictRequest'][0].pop('parameters')  # None: the stand-in network above sets the field, the SDK leaves it unset
    status, dry, err = run(capsys, *argv, '--dry_run')
    assert status == 0, err
    dry_sent = {k: printed(dry, k) for k in real}
    dry_sent['PredictRequest'][0]['endpoint'] = real['PredictRequest'][0]['endpoint']
    assert dry_sent == real

@pytest.mark.parametrize('flags, says', [
    (['--machine_type', 'n1-standard-4'], '--engine vllm runs on a GPU: n1-standard-4 has none'),
    (['--machine_type', 'g2-standard-8', '--gpu_memory_utilization', 1.5], 'a share, above 0 and at most 1'),
    (['--engine', 'native', '--image', 'serve:1', '--max_model_len', 2048], "set vLLM's server: add --engine vllm"),
])
def test_a_vllm_deployment_that_cannot_run_is_one_line(network, capsys, model_dir, flags, says):
    status, _, err = run(capsys, 'deploy', '--model_dir', model_dir, '--project', 'p', '--bucket', 'gs://b/s', '--engine', 'vllm', *flags)
    assert status == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert network.sent == [] and network.uploads == []

def test_vllm_refuses_a_seq2seq_student(network, capsys, tiny_run):
    status, _, err = run(capsys, 'deploy', '--model_dir', tiny_run, '--project', 'p', '--bucket', 'gs://b/s', '--engine', 'vllm', '--machine_type', 'g2-standard-8')
    assert status == 2 and 'seq2seq (encoder-decoder) student, which vLLM does not serve' in err, err
    assert network.sent == [] and network.uploads == []

def test_a_model_already_in_cloud_storage_is_deployed_in_place(network, capsys):
    status, out, err = run(capsys, 'deploy', '--model_dir', '/gcs/bkt/pipeline/train_1/model', '--project', 'my-project', '--image', 'serve:1',
                           '--machine_type', 'n1-standard-8', '--accelerator_type', 'NVIDIA_TESLA_T4')
    assert status == 0, err
    assert network.uploads == []
    assert network.of('UploadModelRequest')[0]['model']['artifactUri'] == 'gs://bkt/pipeline/train_1/model'
    assert network.of('DeployModelRequest')[0]['deployedModel']['dedicatedResources']['machineSpec'] == {
        'machineType': 'n1-standard-8', 'acceleratorType': 'NVIDIA_TESLA_T4', 'acceleratorCount': 1}

@pytest.mark.parametrize('flags, says', [
    (['--machine_type', 'n1-standard-4', '--accelerator_type', 'NVIDIA_L4'], 'NVIDIA_L4 does not go on n1 machines'),
    (['--machine_type', 'a2-highgpu-1g', '--accelerator_count', 2], 'carries 1 x NVIDIA_TESLA_A100'),
    (['--machine_type', 'a3-megagpu-1g'], 'that family comes as a3-megagpu-8g'),
    (['--min_replicas', 2, '--max_replicas', 1], 'need 1 <= min <= max'),
])
def test_a_bad_deployment_is_one_line_before_anything_is_sent(network, capsys, model_dir, flags, says):
    status, _, err = run(capsys, 'deploy', '--model_dir', model_dir, '--project', 'p', '--bucket', 'gs://b/s', '--image', 'serve:1', *flags)
    assert status == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert network.sent == [] and network.uploads == []

def test_deploy_needs_a_bucket_only_for_a_local_model(network, capsys, model_dir):
    status, _, err = run(capsys, 'deploy', '--model_dir', model_dir, '--project', 'p', '--image', 'serve:1')
    assert status == 2 and 'is on this machine: give --bucket gs://BUCKET/FOLDER' in err
    status, _, err = run(capsys, 'deploy', '--model_dir', model_dir, '--project', 'p', '--dry_run')
    assert status == 2 and 'deploying needs --image' in err

def test_deploy_as_a_service_account(network, capsys):
    status, _, err = run(capsys, 'deploy', '--model_dir', 'gs://b/m', '--project', 'my-project', '--image', 'serve:1', '--service_account', SA)
    assert status == 0, err
    assert network.of('DeployModelRequest')[0]['deployedModel']['serviceAccount'] == SA
    status, _, err = run(capsys, 'deploy', '--model_dir', 'gs://b/m', '--project', 'my-project', '--image', 'serve:1', '--service_account', 'me@example.com')
    assert status == 2 and "--service_account 'me@example.com': not a service account's email" in err

def test_a_deployment_that_fails_halfway_says_what_it_made(network, capsys, monkeypatch):
    from google.api_core import exceptions
    def no_quota(self, *a, **k): raise exceptions.ResourceExhausted('Quota exceeded for NVIDIA_L4 in us-central1')
    monkeypatch.setattr(EndpointServiceClient, 'deploy_model', no_quota)
    status, _, err = run(capsys, 'deploy', '--model_dir', 'gs://b/m', '--project', 'my-project', '--image', 'serve:1', '--machine_type', 'g2-standard-8')
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert 'Google Cloud refused: 429 Quota exceeded for NVIDIA_L4' in err
    assert 'already made: the endpoint projects/my-project/locations/us-central1/endpoints/55 (remove it and its models: distill-sbs deploy --delete 55' in err

def test_delete_undeploys_then_deletes_the_endpoint_and_its_models(network, capsys):
    status, out, err = run(capsys, 'deploy', '--delete', '55', '--project', 'my-project')
    assert status == 0, err
    assert [type(r).__name__ for r in network.sent] == ['UndeployModelRequest', 'DeleteEndpointRequest', 'DeleteModelRequest']
    assert network.of('UndeployModelRequest')[0]['deployedModelId'] == '3'
    assert network.of('DeleteModelRequest')[0]['name'] == 'projects/my-project/locations/us-central1/models/77'

# ---- pipelines (chapter 9)

def test_a_pipeline_starts_as_the_sdk_sends_it(network, capsys, tmp_path):
    argv = ['pipeline', '--root', 'gs://b/course', '--image', 'img:1', '--serve_image', 'serve:1', '--project', 'my-project',
            '--package', tmp_path/'course.yaml', '--dataset', 'svamp', '--service_account', SA, '--start']
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    (req,) = network.of('CreatePipelineJobRequest')
    job = req['pipelineJob']
    assert job['serviceAccount'] == SA
    assert job['runtimeConfig']['gcsOutputDirectory'].startswith('gs://b/course')
    assert job['runtimeConfig']['parameterValues']['dataset'] == 'svamp'
    assert job['pipelineSpec']['pipelineInfo']['name'] == 'distill-sbs-course'
    status, dry, err = run(capsys, *argv[:-1], '--dry_run')
    assert status == 0, err
    (printed_req,) = printed(dry, 'CreatePipelineJobRequest')
    same = lambda r: {**r, 'pipelineJobId': None, 'pipelineJob': {k: v for k, v in r['pipelineJob'].items() if k != 'displayName'}}  # the job id has the time in it
    assert same(printed_req) == same(req)

def test_a_pipeline_refuses_a_region_vertex_ai_does_not_have_before_writing_its_spec(network, capsys, tmp_path):
    status, _, err = run(capsys, 'pipeline', '--root', 'gs://b/course', '--image', 'img:1', '--serve_image', 'serve:1', '--project', 'p',
                         '--region', 'europe_west4', '--package', tmp_path/'c.yaml', '--start')
    assert status == 2 and "--region 'europe_west4': not a Vertex AI region" in err and not (tmp_path/'c.yaml').exists()

def test_a_pipeline_refuses_a_service_account_that_is_not_an_email(network, capsys, tmp_path):
    status, _, err = run(capsys, 'pipeline', '--root', 'gs://b/course', '--image', 'img:1', '--serve_image', 'serve:1', '--project', 'p',
                         '--package', tmp_path/'c.yaml', '--service_account', 'me', '--start')
    assert status == 2 and "--service_account 'me'" in err and network.sent == []
