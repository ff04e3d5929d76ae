# The project's image for Vertex AI: it serves a student (chapter 6, nbs/06_serve.ipynb; the default command), and it runs
# training jobs, sweeps and every step of the course pipeline (chapter 8, nbs/08_sweep.ipynb), which give their own
# command (`distill-sbs launch ...`, `distill-sbs train ...`). Build it from the repository's root:
#   gcloud builds submit --tag REGION-docker.pkg.dev/PROJECT/REPO/distill-sbs:latest .
# Vertex AI sets AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE and AIP_STORAGE_URI; `distill-sbs serve` reads them.
# It listens on every interface here (--host 0.0.0.0): inside a container, loopback cannot be reached from outside.
# The base is PyTorch's official CUDA runtime image; pick a newer tag from hub.docker.com/r/pytorch/pytorch as they come.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY distill_sbs ./distill_sbs
RUN pip install --no-cache-dir ".[serve,gcs,teacher,deploy]"
ENV AIP_HTTP_PORT=8080 PYTHONUNBUFFERED=1
EXPOSE 8080
CMD ["distill-sbs", "serve", "--host", "0.0.0.0"]
