# syntax=docker/dockerfile:1
# Millstream on Flink: the official Flink 2.0 image + Python 3.11 + PyFlink + the millstream package
# + the Kafka connector jars. Used by k8s/components/flink/flinkdeployment.yaml (application mode): the
# operator starts the JobManager with Flink's PythonDriver, `-pym infra.cli run flink`, i.e.
# `millstream run flink`, which sees it runs under the PythonDriver and submits the job to that
# cluster (the checkpoint folder, state backend and restore path come from the flinkConfiguration and
# the operator). The same job can be submitted by hand to a session cluster:
#   flink run -pym infra.cli -pyexec python3 -- run flink
#
# Build from the repository root:
#   docker build -f infra/docker/flink.Dockerfile -t ghcr.io/millstream/millstream-flink:0.1.0 .
#
# The Kafka jars are fetched during the build by `python -m infra.flink_jars` (pinned wheel, SHA-256
# checked), so the build needs no git-ignored files from the host. Runs as Flink's user 9999 and writes
# only to /tmp and /opt/flink/log, so the root filesystem can be mounted read-only.

# Flink and PyFlink must be the same release (apache-flink==2.0.2 in pyproject.toml's `flink` extra).
ARG FLINK_IMAGE=flink:2.0.2-scala_2.12-java17
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.5.11

FROM ${UV_IMAGE} AS uv

FROM ${FLINK_IMAGE}
LABEL org.opencontainers.image.title="millstream-flink" \
      org.opencontainers.image.description="Millstream's stream job (windows, SPC, anomaly detection) on Apache Flink 2.0 with PyFlink." \
      org.opencontainers.image.licenses="Apache-2.0"

USER root
COPY --from=uv /uv /usr/local/bin/uv
# A standalone CPython 3.11 (the Flink image's Ubuntu ships another minor version) in /opt/python,
# and the project's virtualenv in /opt/venv, first on PATH: `python3` (python.executable in the
# FlinkDeployment) is the venv's interpreter on the JobManager and on every TaskManager.
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_NO_CACHE=1 \
    PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN uv python install 3.11 \
    && uv venv --seed --python 3.11 /opt/venv

WORKDIR /opt/millstream
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY ingest ./ingest
COPY streams ./streams
COPY sinks ./sinks
COPY infra ./infra
RUN uv pip install --python /opt/venv/bin/python '.[flink]' \
    && python -m infra.flink_jars --dest /opt/flink/lib \
    # PyFlink needs flink-python on the cluster classpath; the FlinkDeployment's jarURI names it
    # without its version.
    && cp /opt/flink/opt/flink-python-*.jar /opt/flink/lib/ \
    && ln -sf "$(ls /opt/flink/opt/flink-python-*.jar | head -n 1)" /opt/flink/opt/flink-python.jar \
    && python -c "import pyflink, streams.flink.job, streams.flink.functions" \
    && millstream run flink --help > /dev/null

WORKDIR /opt/flink
# Flink's user `flink` by its numeric id (the official image creates it as 9999:9999), so that
# Kubernetes can verify runAsNonRoot from the image alone.
USER 9999:9999
# The Flink image's entrypoint stays: the operator (and `docker run ... jobmanager`) rely on it.
