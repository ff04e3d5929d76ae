"""`distill-sbs pipeline` (chapter 9) through the command line: the compiled spec field by field, each step's outputs
the next step's inputs (no fixed folder anywhere, the project a parameter) and each step's arguments ones its command
takes, the training steps' GPUs as Vertex AI has them, the cache keys that follow (a new dataset or teacher runs again
everything below it, and nothing above), every step cached (the deployment too) unless a run says --no_cache, and bad
flags refused in one line."""
import json, re
import pytest, yaml
from conftest import cli, error_line, ok, refused
from distill_sbs.pipeline import cache_keys, step_inputs

PIPE = ['pipeline', '--root', 'gs://b/course', '--image', 'img:1', '--serve_image', 'serve:1']
STEPS = ['data (chapter 0)', 'teacher (chapter 1)', 'distilled student (chapter 4)', 'standard student (chapter 4)',
         'evaluation (chapter 5)', 'deployment (chapter 7)']

def compiled(tmp_path, *flags, name='c.yaml') -> dict:
    "The spec `distill-sbs pipeline` compiles with `flags` (and a project unless they give the package another way)."
    ok(cli(*PIPE, *flags, '--package', tmp_path/name))
    return yaml.safe_load((tmp_path/name).read_text())

def by_step(spec) -> dict:
    "{step's display name: (its task, its component, its container)}."
    out = {}
    for t in spec['root']['dag']['tasks'].values():
        comp = spec['components'][t['componentRef']['name']]
        out[t['taskInfo']['name']] = t, comp, spec['deploymentSpec']['executors'][comp['executorLabel']]['container']
    return out

def flag(args, name): return args[args.index(name) + 1]

def test_the_compiled_pipeline_field_by_field(tmp_path):
    res = ok(cli(*PIPE, '--project', 'p', '--region', 'europe-west4', '--package', tmp_path/'course.yaml'))
    assert f'compiled {tmp_path/"course.yaml"}' in res.stdout
    spec = yaml.safe_load((tmp_path/'course.yaml').read_text())
    assert spec['pipelineInfo']['name'] == 'distill-sbs-course' and spec['defaultPipelineRoot'] == 'gs://b/course'  # --root is the pipeline root
    params = spec['root']['inputDefinitions']['parameters']
    assert {k: (v['parameterType'], v['defaultValue']) for k, v in params.items()} == {
        'project': ('STRING', 'p'), 'dataset': ('STRING', 'cqa'), 'teacher_model': ('STRING', 'gemini-2.5-flash'), 'student': ('STRING', 'google/flan-t5-base'),
        'max_steps': ('NUMBER_INTEGER', 10000)}
    steps = by_step(spec)
    name_of = {key: t['taskInfo']['name'] for key, t in spec['root']['dag']['tasks'].items()}
    after = {n: sorted(name_of[d] for d in t.get('dependentTasks', [])) for n, (t, _, _) in steps.items()}
    assert after == {'data (chapter 0)': [], 'teacher (chapter 1)': ['data (chapter 0)'],
                     'distilled student (chapter 4)': ['teacher (chapter 1)'], 'standard student (chapter 4)': ['teacher (chapter 1)'],
                     'evaluation (chapter 5)': ['distilled student (chapter 4)', 'standard student (chapter 4)'],
                     'deployment (chapter 7)': ['distilled student (chapter 4)', 'evaluation (chapter 5)']}  # the model it deploys; after it was scored
    assert {n: c['command'] for n, (_, _, c) in steps.items()} == {
        'data (chapter 0)': ['distill-sbs', 'data'], 'teacher (chapter 1)': ['distill-sbs', 'teach'],
        'distilled student (chapter 4)': ['distill-sbs', 'train'], 'standard student (chapter 4)': ['distill-sbs', 'train'],
        'evaluation (chapter 5)': ['distill-sbs', 'evaluate'], 'deployment (chapter 7)': ['distill-sbs', 'deploy']}
    assert {c['image'] for _, _, c in steps.values()} == {'img:1'}
    teach = steps['teacher (chapter 1)'][2]['args']
    assert (flag(teach, '--backend'), flag(teach, '--location'), flag(teach, '--project')) == ('vertex', 'europe-west4', "{{$.inputs.parameters['project']}}")
    assert flag(teach, '--cache').startswith('/tmp/')  # SQLite on the step's own disk, not over Cloud Storage FUSE
    deploy = steps['deployment (chapter 7)'][2]['args']
    assert (flag(deploy, '--image'), flag(deploy, '--region'), flag(deploy, '--name')) == ('serve:1', 'europe-west4', 'distill-sbs-student')
    assert '--bucket' not in deploy  # registered where it lies
    assert step_inputs(spec)['deployment (chapter 7)']['project'] == 'parameter project'  # compiled with a project: the parameter's default
    gpu = steps['distilled student (chapter 4)'][2]['resources']['accelerator']
    assert gpu['resourceType'] == 'NVIDIA_L4' and gpu['resourceCount'] == '1'
    assert 'resources' not in steps['evaluation (chapter 5)'][2]

def test_each_steps_outputs_are_the_next_steps_inputs(tmp_path):
    "Every folder a command writes is its step's output artifact, every folder it reads an input artifact from the step before."
    spec = compiled(tmp_path, '--project', 'p')
    assert step_inputs(spec) == {
        'data (chapter 0)': {'dataset': 'parameter dataset'},
        'teacher (chapter 1)': {'data': 'data (chapter 0).data', 'project': 'parameter project', 'teacher_model': 'parameter teacher_model'},
        'distilled student (chapter 4)': {'taught': 'teacher (chapter 1).taught', 'max_steps': 'parameter max_steps', 'model_type': "'task_prefix'",
                                          'student': 'parameter student'},
        'standard student (chapter 4)': {'taught': 'teacher (chapter 1).taught', 'max_steps': 'parameter max_steps', 'model_type': "'standard'",
                                         'student': 'parameter student'},
        'evaluation (chapter 5)': {'distilled': 'distilled student (chapter 4).model', 'standard': 'standard student (chapter 4).model'},
        'deployment (chapter 7)': {'model': 'distilled student (chapter 4).model', 'project': 'parameter project'}}
    assert list(step_inputs(spec)) == STEPS  # in the order they run
    steps = by_step(spec)
    out = lambda name: "{{$.outputs.artifacts['%s'].path}}" % name
    given = lambda name: "{{$.inputs.artifacts['%s'].path}}" % name
    args = {n: c['args'] for n, (_, _, c) in steps.items()}
    assert flag(args['data (chapter 0)'], '--output_dir') == out('data')
    assert (flag(args['teacher (chapter 1)'], '--data_dir'), flag(args['teacher (chapter 1)'], '--output_dir')) == (given('data'), out('taught'))
    for s in ('distilled student (chapter 4)', 'standard student (chapter 4)'):
        assert (flag(args[s], '--data_dir'), flag(args[s], '--output_dir')) == (given('taught'), out('model'))
    assert args['evaluation (chapter 5)'] == [given('distilled'), given('standard'), '--output_dir', out('evaluation')]
    deploy = args['deployment (chapter 7)']
    assert flag(deploy, '--model_dir') == given('model')
    assert (flag(deploy, '--endpoint_name_file'), flag(deploy, '--model_name_file')) == (
        "{{$.outputs.parameters['endpoint'].output_file}}", "{{$.outputs.parameters['model_name'].output_file}}")
    kinds = {n: ({k: v['artifactType']['schemaTitle'] for k, v in comp.get('inputDefinitions', {}).get('artifacts', {}).items()},
                 {k: v['artifactType']['schemaTitle'] for k, v in comp.get('outputDefinitions', {}).get('artifacts', {}).items()})
             for n, (_, comp, _) in steps.items()}
    assert kinds == {'data (chapter 0)': ({}, {'data': 'system.Dataset'}),
                     'teacher (chapter 1)': ({'data': 'system.Dataset'}, {'taught': 'system.Dataset'}),
                     'distilled student (chapter 4)': ({'taught': 'system.Dataset'}, {'model': 'system.Model'}),
                     'standard student (chapter 4)': ({'taught': 'system.Dataset'}, {'model': 'system.Model'}),
                     'evaluation (chapter 5)': ({'distilled': 'system.Model', 'standard': 'system.Model'}, {'evaluation': 'system.Artifact'}),
                     'deployment (chapter 7)': ({'model': 'system.Model'}, {})}
    assert steps['deployment (chapter 7)'][1]['outputDefinitions']['parameters'] == {'endpoint': {'parameterType': 'STRING'},
                                                                                      'model_name': {'parameterType': 'STRING'}}

@pytest.mark.parametrize('project', [['--project', 'p'], []], ids=['with a project', 'project as a parameter'])
def test_every_input_is_an_output_a_parameter_or_the_model_type(tmp_path, project):
    "Every task input is another task's output, a pipeline parameter (the project too, with or without a default) or the one constant, the student's model_type; no executor argument names a bucket."
    spec = compiled(tmp_path, *project)
    fixed = re.compile(r'/gcs/|gs://')
    constants = []
    for name, (task, _, container) in by_step(spec).items():
        for kinds in task['inputs'].values():
            for k, v in kinds.items():
                (how,) = v  # exactly one way in
                assert how in ('taskOutputArtifact', 'taskOutputParameter', 'componentInputParameter', 'runtimeValue'), (name, k, v)
                if how == 'runtimeValue': constants.append((name, k, v['runtimeValue']['constant']))
        assert not [a for a in container['command'] + container['args'] if fixed.search(str(a))], (name, container['args'])
    assert constants == [('distilled student (chapter 4)', 'model_type', 'task_prefix'), ('standard student (chapter 4)', 'model_type', 'standard')]
    assert {s: given.get('project') for s, given in step_inputs(spec).items() if 'project' in given} == {
        'teacher (chapter 1)': 'parameter project', 'deployment (chapter 7)': 'parameter project'}
    assert spec['defaultPipelineRoot'] == 'gs://b/course'  # the only place --root goes

def test_every_step_is_cached_the_deployment_too(tmp_path):
    "Its inputs are the distilled model's artifact (unique to the training execution that made it) and the project: a cache hit is that very model's deployment."
    steps = by_step(compiled(tmp_path, '--project', 'p'))
    assert {n: t['cachingOptions'] for n, (t, _, _) in steps.items()} == {s: {'enableCache': True} for s in STEPS}

def sent_caching(res) -> dict:
    "{step: cachingOptions} of the pipeline job a dry run would send (the JSON of its `CreatePipelineJobRequest`)."
    (line,) = [l for l in res.stdout.splitlines() if l.startswith('would send CreatePipelineJobRequest ')]
    job = json.loads(line.split(' ', 3)[3])['pipelineJob']
    assert job['runtimeConfig']['parameterValues']['project'] == 'p'
    return {t['taskInfo']['name']: t['cachingOptions'] for t in job['pipelineSpec']['root']['dag']['tasks'].values()}

def test_no_cache_turns_every_steps_cache_off_in_the_job_sent(tmp_path):
    "The SDK's own doing (`PipelineJob(enable_caching=False)` rewrites every task's cachingOptions), seen in the request a dry run would send."
    start = [*PIPE, '--project', 'p', '--start', '--dry_run', '--package', tmp_path/'c.yaml']
    assert sent_caching(ok(cli(*start))) == {s: {'enableCache': True} for s in STEPS}  # without the flag: each step's own setting
    assert sent_caching(ok(cli(*start, '--no_cache'))) == {s: {'enableCache': False} for s in STEPS}

@pytest.mark.parametrize('flags, enable_caching', [([], None), (['--no_cache'], False)])
def test_no_cache_reaches_run_pipeline(tmp_path, monkeypatch, flags, enable_caching):
    calls = []
    class Recorder:
        def __init__(self, *args): calls.append(args[:3])
        def run_pipeline(self, *args, **kw): calls.append((args, kw))
    monkeypatch.setattr('distill_sbs.pipeline.Vertex', Recorder)
    ok(cli(*PIPE, '--project', 'p', '--region', 'europe-west4', '--start', *flags, '--package', tmp_path/'c.yaml'))
    (made, ((path, root, name, values), kw)) = calls
    assert made == ('p', 'europe-west4', False) and (str(path), root, name) == (str(tmp_path/'c.yaml'), 'gs://b/course', 'distill-sbs-course')
    assert values == dict(project='p', dataset='cqa', teacher_model='gemini-2.5-flash', student='google/flan-t5-base', max_steps=10000)
    assert kw == dict(service_account=None, enable_caching=enable_caching)

def trainer(spec) -> tuple:
    "The training steps' (command, GPU type, GPU count), the same for both students."
    steps = by_step(spec)
    ((command, gpu),) = {(tuple(c['command']), (c['resources']['accelerator']['resourceType'], c['resources']['accelerator']['resourceCount']))
                         for s, (_, _, c) in steps.items() if 'student' in s}
    assert not [s for s, (_, _, c) in steps.items() if 'student' not in s and 'resources' in c]  # only the students get GPUs
    return list(command), *gpu

@pytest.mark.parametrize('flags, expected', [
    ([], (['distill-sbs', 'train'], 'NVIDIA_L4', '1')),
    (['--accelerator', 'NVIDIA_TESLA_T4'], (['distill-sbs', 'train'], 'NVIDIA_TESLA_T4', '1')),
    (['--accelerator', 'NVIDIA_TESLA_A100'], (['distill-sbs', 'train'], 'NVIDIA_TESLA_A100', '1')),
    (['--accelerator', 'NVIDIA_B200'], (['distill-sbs', 'launch', 'train'], 'NVIDIA_B200', '8')),  # only 8 to a machine
    (['--accelerator', 'NVIDIA_H200_141GB'], (['distill-sbs', 'launch', 'train'], 'NVIDIA_H200_141GB', '8')),
    (['--accelerator', 'NVIDIA_H100_MEGA_80GB'], (['distill-sbs', 'launch', 'train'], 'NVIDIA_H100_MEGA_80GB', '8')),
    (['--accelerator', 'NVIDIA_L4', '--accelerator_count', '2'], (['distill-sbs', 'launch', 'train'], 'NVIDIA_L4', '2')),
    (['--accelerator', 'NVIDIA_TESLA_V100', '--accelerator_count', '8'], (['distill-sbs', 'launch', 'train'], 'NVIDIA_TESLA_V100', '8')),  # n1's
    (['--accelerator', 'NVIDIA_TESLA_A100', '--accelerator_count', '16'], (['distill-sbs', 'launch', 'train'], 'NVIDIA_TESLA_A100', '16')),
    (['--accelerator', 'NVIDIA_B200', '--accelerator_count', '8'], (['distill-sbs', 'launch', 'train'], 'NVIDIA_B200', '8')),
], ids=['L4', 'T4', 'A100', 'B200', 'H200', 'H100 MEGA', '2 L4', '8 V100', '16 A100', '8 B200'])
def test_the_training_steps_gpus_are_a_count_vertex_ai_has(tmp_path, flags, expected):
    "The default count is the fewest the GPU comes in; with more than one, the step runs train through launch (torchrun over the machine's GPUs)."
    assert trainer(compiled(tmp_path, '--project', 'p', *flags)) == expected

def changed(before, after, spec) -> list:
    "The display names of the steps whose cache keys differ between `before` and `after`."
    shown = {k: t['taskInfo']['name'] for k, t in spec['root']['dag']['tasks'].items()}
    assert set(before) == set(after) == set(shown)
    return sorted(shown[k] for k in before if before[k] != after[k])

def test_a_new_dataset_changes_every_cache_key_and_a_new_teacher_every_one_after_the_data(tmp_path):
    "Compiled twice with one flag apart, the specs' cache keys: every step downstream of what changed runs again, none upstream."
    spec = compiled(tmp_path, '--project', 'p')
    keys = cache_keys(spec)
    for flags, runs_again in [(['--dataset', 'svamp'], STEPS),
                              (['--teacher_model', 'gemini-2.5-pro'], STEPS[1:]),
                              (['--max_steps', '50'], STEPS[2:]),
                              (['--student', 'google/flan-t5-small'], STEPS[2:]),
                              (['--image', 'img:2'], STEPS),  # flags after PIPE's own win
                              (['--serve_image', 'serve:2'], ['deployment (chapter 7)']),
                              ([], [])]:
        other = compiled(tmp_path, '--project', 'p', *flags, name='other.yaml')
        assert changed(keys, cache_keys(other), spec) == sorted(runs_again), flags
    assert cache_keys(spec, {'dataset': 'svamp'}) == cache_keys(compiled(tmp_path, '--project', 'p', '--dataset', 'svamp', name='svamp.yaml'))
    assert cache_keys(spec, {'max_steps': 10000}) == keys  # a run's whole number is the spec's 10000.0

def test_the_project_as_a_parameter_keys_the_steps_that_read_it(tmp_path):
    spec = compiled(tmp_path)
    a, b = cache_keys(spec, {'project': 'p'}), cache_keys(spec, {'project': 'q'})
    assert changed(a, b, spec) == sorted(STEPS[1:])  # the teacher reads it, and everything after takes the teacher's output
    with_p, with_q = compiled(tmp_path, '--project', 'p', name='p.yaml'), compiled(tmp_path, '--project', 'q', name='q.yaml')
    assert cache_keys(with_p) == a and cache_keys(with_q) == b  # a compiled project is only the parameter's default: no step differs
    assert cache_keys(with_p, {'project': 'q'}) == b

def test_the_pipeline_carries_its_flags_as_parameter_defaults(tmp_path):
    res = ok(cli(*PIPE, '--project', 'p', '--dataset', 'svamp', '--student', 'google/flan-t5-small', '--max_steps', 50,
                 '--teacher_model', 'gemini-2.5-pro', '--package', tmp_path/'c.yaml'))
    params = yaml.safe_load((tmp_path/'c.yaml').read_text())['root']['inputDefinitions']['parameters']
    assert {k: v['defaultValue'] for k, v in params.items()} == dict(project='p', dataset='svamp', teacher_model='gemini-2.5-pro',
                                                                     student='google/flan-t5-small', max_steps=50)
    assert 'PipelineJob' not in res.stdout and 'would' not in res.stdout  # compiled, nothing started

def test_the_pipeline_compiles_without_a_project_and_into_a_new_folder(tmp_path):
    package = tmp_path/'new'/'folder'/'course.yaml'
    res = ok(cli(*PIPE, '--package', package))
    assert f'compiled {package}' in res.stdout
    spec = yaml.safe_load(package.read_text())
    params = spec['root']['inputDefinitions']['parameters']
    assert params['project'] == {'parameterType': 'STRING'}  # no default: given when it starts
    inputs = step_inputs(spec)
    assert {s: inputs[s].get('project') for s in STEPS} == {s: 'parameter project' if s in ('teacher (chapter 1)', 'deployment (chapter 7)') else None
                                                            for s in STEPS}

@pytest.mark.parametrize('flags, says', [
    (['--dataset', 'bogus'], "invalid choice: --dataset 'bogus'"),
    (['--dataset', 'generic'], "invalid choice: --dataset 'generic'"),
    (['--max_steps', '0'], '--max_steps must be at least 1, got 0'),
    (['--start'], '--start needs --project'),
    (['--dry_run'], '--dry_run needs --project'),
    (['--run'], '--run: the pipeline starts with --start'),
    (['--project', 'p', '--run'], '--run: the pipeline starts with --start'),
    (['--package', 'spec.txt'], 'a pipeline spec is a .yaml (or .json) file'),
    (['--root', 'runs/local'], "--root 'runs/local': a pipeline writes to Cloud Storage"),
    (['--root', '/gcs/b/course'], "--root '/gcs/b/course': a pipeline writes to Cloud Storage"),
    (['--project', 'p', '--start', '--service_account', 'robot'], "--service_account 'robot': not a service account's email"),
    (['--project', 'p', '--dry_run', '--service_account', 'a@b'], "--service_account 'a@b': not a service account's email"),
    (['--project', 'p', '--start', '--service_account', 'a b@p.iam.gserviceaccount.com'], 'expected NAME@PROJECT.iam.gserviceaccount.com'),
    (['--service_account', 'robot'], "--service_account 'robot': not a service account's email"),  # the shape first, wherever it is given
    (['--service_account', 'sa@p.iam.gserviceaccount.com'], '--service_account is the account a started pipeline runs as: add --start'),
    (['--no_cache'], '--no_cache is how a started pipeline runs (the spec keeps each step\'s caching): add --start'),
    (['--project', 'p', '--no_cache'], '--no_cache is how a started pipeline runs'),
    (['--accelerator', 'NVIDIA_B200', '--accelerator_count', '1'], '--accelerator_count 1: on Vertex AI NVIDIA_B200 comes 8 to a machine'),
    (['--accelerator', 'NVIDIA_H100_MEGA_80GB', '--accelerator_count', '4'], '--accelerator_count 4: on Vertex AI NVIDIA_H100_MEGA_80GB comes 8 to a machine'),
    (['--accelerator_count', '3'], '--accelerator_count 3: on Vertex AI NVIDIA_L4 comes 1, 2, 4 or 8 to a machine'),
    (['--accelerator', 'NVIDIA_TESLA_T4', '--accelerator_count', '8'], 'NVIDIA_TESLA_T4 comes 1, 2 or 4 to a machine'),
    (['--accelerator_count', '0'], '--accelerator_count 0: on Vertex AI NVIDIA_L4 comes 1, 2, 4 or 8'),
    (['--accelerator_count', 'two'], "--accelerator_count: invalid int value: 'two'"),
    (['--accelerator', 'NVIDIA_TESLA_P100'], "invalid choice: --accelerator 'NVIDIA_TESLA_P100'"),  # Pascal: the image cannot use it
])
def test_bad_pipeline_flags_get_one_line(tmp_path, flags, says):
    args = [*PIPE, *(['--package', tmp_path/'x'/'p.yaml'] if '--package' not in flags else []), *flags]
    res = cli(*args, cwd=tmp_path)
    assert says in error_line(res, 'pipeline') and 'compiled' not in res.stdout
    assert not (tmp_path/'x').exists() and not (tmp_path/'spec.txt').exists()

def test_a_package_in_a_file_not_a_folder_gets_one_line(tmp_path):
    (tmp_path/'file').write_text('')
    refused(cli(*PIPE, '--package', tmp_path/'file'/'c.yaml'), '--package', 'pipeline')
    (tmp_path/'d.yaml').mkdir()
    refused(cli(*PIPE, '--package', tmp_path/'d.yaml'), 'a folder', 'pipeline')

@pytest.mark.parametrize('account', [[], ['--service_account', 'distill-sbs@my-project.iam.gserviceaccount.com']], ids=['default account', 'its own account'])
def test_the_pipeline_starts_with_start(tmp_path, account):
    "The SDK's calls themselves are chapter 7's to check: here, that a dry run compiles and gets as far as the pipeline job."
    res = ok(cli(*PIPE, '--project', 'p', '--start', '--dry_run', '--dataset', 'svamp', *account, '--package', tmp_path/'c.yaml'))
    assert f'compiled {tmp_path/"c.yaml"}' in res.stdout and re.search(r'pipeline ?job', res.stdout, re.I), res.stdout[-2000:]

@pytest.mark.parametrize('gpus', [[], ['--accelerator', 'NVIDIA_B200']], ids=['one L4', 'eight B200 through launch'])
def test_every_steps_command_line_is_one_its_command_takes(tmp_path, gpus):
    "Each step's arguments, its placeholders filled in as Vertex AI would (a folder per output, an input the folder its producer wrote, the parameters' defaults), parse with its own command's flags (a `launch` prefix's command: what torchrun runs)."
    from distill_sbs.cli import parser
    from distill_sbs.evaluation import evaluate_parser
    from distill_sbs.jobs import launch_argv
    from distill_sbs.teacher import teach_parser
    from distill_sbs.training import parse_config
    from distill_sbs.vertex import deploy_parser
    spec = compiled(tmp_path, '--project', 'p', *gpus)
    defaults = {k: v['defaultValue'] for k, v in spec['root']['inputDefinitions']['parameters'].items()}
    run = tmp_path/'gcs'/'b'/'course'/'123456789'/'distill-sbs-course-20260101000000'  # /gcs/<root>/<project number>/<job id>
    commands = {'data': lambda a: parser().parse_args(['data', *a]), 'teach': teach_parser().parse_args, 'train': parse_config,
                'evaluate': evaluate_parser().parse_args, 'deploy': deploy_parser().parse_args}
    parsed = {}
    for key, task in spec['root']['dag']['tasks'].items():
        container = by_step(spec)[task['taskInfo']['name']][2]
        params = {k: v['runtimeValue']['constant'] if 'runtimeValue' in v else defaults[v['componentInputParameter']]
                  for k, v in task['inputs'].get('parameters', {}).items()}
        given = {k: run/v['taskOutputArtifact']['producerTask']/v['taskOutputArtifact']['outputArtifactKey'] for k, v in task['inputs'].get('artifacts', {}).items()}
        for folder in given.values(): folder.mkdir(parents=True, exist_ok=True)  # what its producer wrote
        value = lambda v: str(int(v) if isinstance(v, float) and v.is_integer() else v)  # a NUMBER_INTEGER default reads 10000.0 in YAML
        def fill(arg):
            arg = re.sub(r"\{\{\$\.inputs\.parameters\['(\w+)'\]\}\}", lambda m: value(params[m[1]]), arg)
            arg = re.sub(r"\{\{\$\.inputs\.artifacts\['(\w+)'\]\.path\}\}", lambda m: str(given[m[1]]), arg)
            arg = re.sub(r"\{\{\$\.outputs\.artifacts\['(\w+)'\]\.path\}\}", lambda m: str(run/key/m[1]), arg)
            return re.sub(r"\{\{\$\.outputs\.parameters\['(\w+)'\]\.output_file\}\}", lambda m: str(tmp_path/'outputs'/key/m[1]), arg)
        args = [fill(str(a)) for a in container['args']]
        assert not [a for a in args if '{{' in a], args
        command = container['command'][1:]
        if command[0] == 'launch':  # chapter 7a's launch: torchrun over this machine's 8 GPUs, each process `distill-sbs train ARGS`
            command = command[1:]
            ran = launch_argv([*command, *args], None, 8)
            assert ran[0] == 'torchrun' and '--nproc_per_node=8' in ran and ran[ran.index('--no-python') + 1:] == ['distill-sbs', *command, *args], ran
        assert len(command) == 1, container['command']
        parsed[task['taskInfo']['name']] = commands[command[0]](args)
    launched = sorted(n for n, (_, _, c) in by_step(spec).items() if c['command'][1] == 'launch')
    assert launched == (['distilled student (chapter 4)', 'standard student (chapter 4)'] if gpus else [])
    data, teacher = parsed['data (chapter 0)'], parsed['teacher (chapter 1)']
    assert data.dataset == 'cqa' and data.output_dir == str(run/'prepare-data'/'data')
    assert (teacher.model, teacher.data_dir, teacher.output_dir) == ('gemini-2.5-flash', data.output_dir, str(run/'teach'/'taught'))
    distilled, standard = parsed['distilled student (chapter 4)'], parsed['standard student (chapter 4)']
    assert (distilled.model_type, standard.model_type, distilled.max_steps, distilled.from_pretrained) == ('task_prefix', 'standard', 10000, 'google/flan-t5-base')
    assert distilled.data_dir == standard.data_dir == teacher.output_dir and distilled.output_dir != standard.output_dir
    assert parsed['evaluation (chapter 5)'].runs == [distilled.output_dir, standard.output_dir]
    deploy = parsed['deployment (chapter 7)']
    assert deploy.model_dir == distilled.output_dir and deploy.bucket is None and deploy.endpoint_name_file != deploy.model_name_file
