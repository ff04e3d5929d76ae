# The project's image for Vertex AI: it serves a student (chapter 6, nbs/06_serve.ipynb; the default command), and it runs
# training jobs (chapter 7a, nbs/07a_jobs.ipynb), sweeps (chapter 8, nbs/08_sweep.ipynb) and every step of the course pipeline (chapter 9,
# nbs/09_pipeline.ipynb), which give their own command (`distill-sbs launch ...`, `distill-sbs train ...`).
# Build it from the repository's root (.dockerignore lets in only what the COPY steps below take):
#   gcloud builds submit --tag REGION-docker.pkg.dev/PROJECT/REPO/distill-sbs:latest .
# Vertex AI sets AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE and AIP_STORAGE_URI; `distill-sbs serve` reads them.
# It listens on every interface here (--host 0.0.0.0): inside a container, loopback cannot be reached from outside.
#
# The base is PyTorch's official CUDA runtime image, and its PyTorch is the image's PyTorch: one CUDA stack.
# Why this tag: transformers 5 and accelerate 1.x need torch >= 2.6 (below it transformers quietly turns PyTorch off),
# and torch 2.8.0 is a release whose default PyPI wheels are built for the same CUDA, 12.8, so the nvidia-* libraries
# the base came with are the ones PyPI's torch names. CUDA 12.8 is also the first to run Blackwell GPUs (B200: Vertex AI's
# A4 machines); its PyTorch builds run Volta to Blackwell (V100, T4, L4, A100, H100, H200, B200) but not Pascal (P4, P100:
# "no kernel image is available"; those need a cuda12.6 tag).
# The driver it needs: CUDA 12.8 wants an NVIDIA driver >= 570 on the node for full support; drivers 525 to 569 run it
# through CUDA's minor-version compatibility (most of PyTorch works; code that needs the newer driver, such as PTX
# compiled at run time, does not). On an older driver PyTorch sees no GPU, and training and serving run on the CPU.
# Moving to a newer PyTorch: pick a `-runtime` tag from hub.docker.com/r/pytorch/pytorch/tags whose CUDA is the one that
# torch's default PyPI wheels use (pip then never has two stacks to choose between; CUDA 13 needs a driver >= 580), change
# PYTORCH_IMAGE below (the tests read it from here), run `pytest -n 0 -q tests/test_container.py` (it resolves this
# install against the new torch) and build. If anything would still replace the base's torch, the build stops at pip.
ARG PYTORCH_IMAGE=pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime
FROM ${PYTORCH_IMAGE}
# The base's own torch stack (torch, its siblings torchvision and torchaudio, triton, the nvidia-* CUDA libraries) as pip
# constraints: the install below must keep them, and pip fails the build rather than bring a second torch and CUDA.
RUN pip list --format=freeze | grep -iE '^(torch|torchvision|torchaudio|triton|nvidia-[^=]+)==' > /opt/torch-constraints.txt; \
    grep -iq '^torch==' /opt/torch-constraints.txt \
      || { echo "image build: the base image has no torch installed by pip; PYTORCH_IMAGE must be a pytorch/pytorch tag" >&2; exit 1; }; \
    cat /opt/torch-constraints.txt
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY distill_sbs ./distill_sbs
RUN pip install --no-cache-dir -c /opt/torch-constraints.txt ".[serve,gcs,teacher,deploy]"
# The image's check: transformers sees torch, torch is still the base's, and it is a CUDA build. One line if not.
RUN python -c "import sys; \
sys.excepthook = lambda kind, e, tb: print(f'image check failed: {kind.__name__}: {e}', file=sys.stderr); \
base = [l.split('==', 1)[1] for l in open('/opt/torch-constraints.txt').read().split() if l.lower().startswith('torch==')][0]; \
import torch, transformers, transformers.utils as tu; \
problem = ('transformers ' + transformers.__version__ + ' does not see torch ' + torch.__version__ if not tu.is_torch_available() \
  else 'torch ' + torch.__version__ + ' replaced the base image torch ' + base if torch.__version__ != base \
  else 'torch ' + torch.__version__ + ' is not a CUDA build' if torch.version.cuda is None else ''); \
sys.exit('image check failed: ' + problem) if problem else print('image check: torch', torch.__version__, 'CUDA', torch.version.cuda, 'transformers', transformers.__version__)"
ENV AIP_HTTP_PORT=8080 PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["distill-sbs", "serve", "--host", "0.0.0.0"]
