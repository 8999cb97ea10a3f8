# The producer image: OpenCV (headless) and numpy on top of the shared code.
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
# trackers (--track) requires opencv-python, the GUI build of the cv2 the producer already has
# headless (no Qt, no libGL in a slim image). Both in one environment overwrite each other's cv2/,
# so the GUI build is removed and the headless one put back whole (uv.lock never installs it).
RUN /opt/framecast/bin/pip install ".[producer]" \
 && headless="$(/opt/framecast/bin/pip freeze | grep -i '^opencv-python-headless==')" \
 && /opt/framecast/bin/pip uninstall -y opencv-python \
 && /opt/framecast/bin/pip install --no-deps --force-reinstall "$headless" \
 && /opt/framecast/bin/python -c "import cv2, trackers; cv2.HOGDescriptor()"

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PATH=/opt/framecast/bin:$PATH
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin --groups video framecast
COPY --from=build /opt/framecast /opt/framecast
WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001
EXPOSE 9100
CMD ["python", "-m", "producer"]
