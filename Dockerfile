# syntax=docker/dockerfile:1
# The gpusched image: one entrypoint `gpusched`, a subcommand per program
# (extender, agent, autoscaler). Used by deploy/chart/gpusched.
#
#   docker build -t ghcr.io/gpusched/gpusched:0.1.0 .
#
# Two stages on python:3.11-slim: the first installs the runtime dependencies (no test or
# bench extras) into a virtual environment from requirements.lock, exact versions checked
# against their sha256 (--require-hashes: a changed or substituted file on the index fails
# the build), then a wheel of this repository with --no-deps, so nothing unpinned comes in;
# the second copies only that environment. No compiler, pip cache or source tree in the result.
#
# requirements.lock is made from pyproject.toml's [project] dependencies with uv (pip-tools'
# resolver backtracked for over ten minutes here once boto3 joined; uv resolves the same in
# under a second), for Python 3.11 on Linux (the image's); after changing a dependency,
# regenerate and commit it:
#
#   .venv/bin/pip install uv
#   .venv/bin/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
#       --python-platform linux -o requirements.lock
#
# (`--upgrade` as well to move every pin to the newest allowed release.) tests/deploy/
# test_lock.py fails when a dependency in pyproject.toml is missing from the lock or pinned
# at a version its specifier does not allow.
# Runs as UID/GID 65532 (non-root), as the chart's securityContext expects, and needs no
# writable root filesystem. NVML (the agent) comes from the NVIDIA container toolkit at run
# time (libnvidia-ml.so.1 is injected into the container), not from this image.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/gpusched
# the locked dependencies first: their layer is reused until requirements.lock changes
COPY requirements.lock ./
RUN /opt/gpusched/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY scheduler ./scheduler
COPY autoscaler ./autoscaler
COPY benchmarks ./benchmarks
RUN /opt/gpusched/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/gpusched/bin/pip install --no-deps /wheels/*.whl \
 && /opt/gpusched/bin/pip check \
 && /opt/gpusched/bin/python -m compileall -q /opt/gpusched/lib \
 && /opt/gpusched/bin/gpusched --help >/dev/null

FROM python:3.11-slim
LABEL org.opencontainers.image.title="gpusched" \
      org.opencontainers.image.description="GPU-aware scheduling and warm autoscaling for LLM inference on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/gpusched/gpusched"
ENV PATH=/opt/gpusched/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
COPY --from=build /opt/gpusched /opt/gpusched
USER 65532:65532
ENTRYPOINT ["gpusched"]
CMD ["--help"]
