# syntax=docker/dockerfile:1
# The kube-vast image: every component runs from it by subcommand, e.g.
#   docker run IMAGE extender | webhook | controller | simulator | offers ... | config check FILE
# (the Helm chart in charts/kube-vast runs extender, webhook and controller as three containers
# of one pod, and the simulator for a trial install).
#
#   docker build -t REGISTRY/kube-vast:0.1.0 .
#
# Two stages: the builder makes wheels of the package and its dependencies and installs them into
# a virtual environment; the runtime stage copies that environment (no build tools, compilers,
# pip or caches) and runs as an unprivileged numeric user (the chart's runAsUser), so runAsNonRoot
# can verify it.
#
# The base is Debian bookworm with Debian's own Python 3.11 (python3, python3-venv), the same as
# the image `make image` builds with no registry (tools/build-image.sh: mmdebstrap + buildah);
# tests/image/test_image.py checks the two agree. Pin the base by digest in your own build
# (debian:bookworm-slim@sha256:...) for reproducible images.

ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build needs (see .dockerignore): metadata first, then the packages.
COPY pyproject.toml setup.cfg README.md ./
COPY vastmarket/ vastmarket/
COPY vastsim/ vastsim/
COPY serving/ serving/
COPY kube_vast/ kube_vast/
COPY extender/ extender/
COPY webhooks/ webhooks/
COPY controller/ controller/
# The package's wheel and a wheel of every dependency.
RUN python3 -m venv /build \
 && /build/bin/pip wheel --wheel-dir /wheels . \
 && python3 -m venv /opt/kube-vast \
 && /opt/kube-vast/bin/pip install --no-index --find-links=/wheels kube-vast \
 && /opt/kube-vast/bin/python -m pip uninstall --yes pip setuptools \
 && find /opt/kube-vast -name '__pycache__' -prune -exec rm -rf {} +

FROM ${DEBIAN_IMAGE}
LABEL org.opencontainers.image.title="kube-vast" \
      org.opencontainers.image.description="Kubernetes GPU pods on rented Vast.ai machines: scheduler extender, admission webhook, controller, simulator" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/kube-vast/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Debian's Python (what the environment's python links to), and an unprivileged user with no home
# and no shell; files it needs at run time come from volumes.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 kube-vast \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin kube-vast
COPY --from=builder /opt/kube-vast /opt/kube-vast
USER 10001:10001
# Ports a component listens on by default: extender 8888, webhook 8443 (HTTPS), controller
# metrics (--metrics-port), simulator 8181.
EXPOSE 8888 8443 8181
ENTRYPOINT ["kube-vast"]
CMD ["--help"]
