# syntax=docker/dockerfile:1
# The duroxide image: the project installed as a wheel (with the cluster and otlp extras) into a
# virtual environment, run as a non-root user by the cluster supervisor.
#
#   docker build -t duroxide:0.1.0 .
#
# Add your application (a setup(runtime) function) in one of two ways (docs/deploy.md):
#   * installed on top:  FROM duroxide:0.1.0 / USER root / RUN pip install /src/myapp / USER 10001
#   * mounted:           -v ./myapp:/app/myapp -e DUROXIDE_APP=myapp.workflows:setup
#                        (/app is the working directory, which is on the import path)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: a wheel of the project, installed with its extras into /opt/duroxide -------------
FROM ${PYTHON_IMAGE} AS build
ARG DUROXIDE_EXTRAS=cluster,otlp
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY duroxide/ duroxide/
COPY cluster/ cluster/
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/duroxide \
 && /opt/duroxide/bin/pip install "$(ls /wheels/duroxide_py-*.whl)[${DUROXIDE_EXTRAS}]" \
 && /opt/duroxide/bin/duroxide-cluster --help > /dev/null \
 && /opt/duroxide/bin/duroxide --help > /dev/null

# --- runtime: the virtual environment only, no build context ---------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG DUROXIDE_UID=10001
LABEL org.opencontainers.image.title="duroxide" \
      org.opencontainers.image.description="Durable execution runtime in pure Python: the cluster supervisor" \
      org.opencontainers.image.licenses="MIT"
RUN groupadd --system --gid "${DUROXIDE_UID}" duroxide \
 && useradd --system --uid "${DUROXIDE_UID}" --gid duroxide --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin duroxide
COPY --from=build /opt/duroxide /opt/duroxide
ENV PATH="/opt/duroxide/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DUROXIDE_HTTP_PORT=9464 \
    DUROXIDE_LOG_FORMAT=json
WORKDIR /app
USER ${DUROXIDE_UID}:${DUROXIDE_UID}
EXPOSE 9464
# /livez answers 200 while the supervisor loop runs (slim images have no curl: Python asks).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('DUROXIDE_HTTP_PORT', '9464'), timeout=4)"]
ENTRYPOINT ["duroxide-cluster"]
