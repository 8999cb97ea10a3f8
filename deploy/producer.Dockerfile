# The producer image: OpenCV (headless), numpy and PyAV (FFmpeg's video encoders) on top of the shared code.
# Stage 1 installs framecast and its dependencies into a virtualenv; stage 2 copies only that
# virtualenv, so no build tooling, pip cache or source tree reaches the runtime image.
# PYTHON_IMAGE may name a digest (python:3.11-slim@sha256:...) to pin the base exactly.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/framecast
WORKDIR /src
COPY pyproject.toml README.md ./
COPY framecast ./framecast
COPY producer ./producer
RUN /opt/framecast/bin/pip install ".[producer]"

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PATH=/opt/framecast/bin:$PATH
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin --groups video framecast
COPY --from=build /opt/framecast /opt/framecast
WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001
EXPOSE 9100
CMD ["python", "-m", "producer"]
