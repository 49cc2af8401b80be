# The action's image: the `longformer-convert` command in a virtual environment, with CPU-only torch.
# GitHub builds it with no build arguments, so every default below is the one used there.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# Where torch's CPU-only wheels come from. Empty means the default index (PyPI) plus PIP_FIND_LINKS,
# for builds that cannot reach it and bring the CPU wheel in a folder:
#   podman build -v "$PWD/build/wheels:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels --build-arg TORCH_INDEX_URL= .
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# A folder of wheels that pip also looks in (read by pip from the environment; empty: none).
ARG PIP_FIND_LINKS=

LABEL org.opencontainers.image.title="longformer-convert" \
      org.opencontainers.image.description="Convert PyTorch Lightning Longformer checkpoints into checked Hugging Face folders." \
      org.opencontainers.image.licenses="Apache-2.0"

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    HF_HUB_DISABLE_TELEMETRY=1 \
    HF_HUB_DISABLE_PROGRESS_BARS=1

# tini runs as PID 1 and passes SIGTERM, SIGINT and SIGHUP on to the command, which removes its
# staging folder and exits (a PID 1 with no handler for SIGTERM is not even ended by it); it also
# reaps any zombie. The Debian package of the base image's release, whose updates it follows.
# hadolint ignore=DL3008 # unpinned: tini's version is the one of the base image's Debian release
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# The virtual environment, then torch alone and without a hash: its CPU build is a different file
# (and hash) on PyTorch's CPU index, on PyPI (where the same version is a CUDA build of several GB)
# and in a local wheel folder, so it cannot sit in the hashed lock. The exact pin keeps it in step
# with requirements/runtime.in.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-deps ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0

# Everything else from the hashed lock, before the code, so that this layer survives code changes.
COPY requirements/runtime.txt /tmp/requirements/runtime.txt
RUN /opt/venv/bin/pip install --no-deps --require-hashes --requirement /tmp/requirements/runtime.txt \
    && /opt/venv/bin/pip check \
    && rm -rf /tmp/requirements

# The package itself, built with the locked setuptools (no build isolation: nothing unlocked is fetched).
COPY pyproject.toml README.md /tmp/src/
COPY longformer_action /tmp/src/longformer_action
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation /tmp/src \
    && rm -rf /tmp/src

# No USER and no WORKDIR: the runner starts container steps as root in /github/workspace, and the
# command hands the files it writes back to the workspace's owner. tini (above) is PID 1.
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/venv/bin/longformer-convert"]
