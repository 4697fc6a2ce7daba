# syntax=docker/dockerfile:1
# The one image of ringrift-operator: `ringrift-operator run` (the operator, the default),
# `ringrift-operator agent` (the node agent) and `ringrift-operator workload` (the sample
# workload). The builder installs the package into a virtualenv; the final stage is the same
# slim Python with only that virtualenv added: no compilers, no pip caches, no sources.
# tests/unit/chart/test_dockerfile.py checks the shape of this file.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
RUN /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install . \
    && /opt/venv/bin/python -m compileall -q /opt/venv \
    && /opt/venv/bin/ringrift-operator --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="ringrift-operator" \
      org.opencontainers.image.description="RingRift's self-play, training, gauntlet and promotion loop on Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /opt/venv /opt/venv
# Bytecode was compiled in the builder: the root filesystem is read-only at run time.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
# 65532: the conventional "nonroot" uid; the chart runs every container as 65532 too.
USER 65532:65532
ENTRYPOINT ["ringrift-operator"]
CMD ["run"]
