# The producer image: OpenCV (headless), numpy and PyAV (FFmpeg's video encoders) on top of the shared code.
# Stage 1 installs framecast and its locked dependencies into a virtualenv; stage 2 copies only that
# virtualenv, so no build tooling, pip cache or source tree reaches the runtime image.
# PYTHON_IMAGE may name a digest (python:3.11-slim@sha256:...) to pin the base exactly.
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Exactly what CI tested: uv.lock exported with hashes (scripts/lock.sh writes deploy/requirements/).
# pip installs nothing unlisted (--no-deps) and nothing whose hash differs (--require-hashes).
# The build backend (setuptools, locked too) gets a virtualenv of its own that stays in this stage.
COPY deploy/requirements /requirements
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r /requirements/build.txt \
 && python -m venv /opt/framecast \
 && /opt/framecast/bin/pip install --require-hashes --no-deps -r /requirements/producer.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY framecast ./framecast
COPY producer ./producer
# trackers (--track) names opencv-python, the GUI build of the cv2 the image has headless (no Qt,
# no libGL in a slim image): uv.lock overrides it away, so the export never lists it and pip check
# reports that one requirement, which is the only one allowed to be missing.
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /dist . \
 && /opt/framecast/bin/pip install --no-deps --no-index /dist/*.whl \
 && /opt/framecast/bin/python -c "import cv2, trackers; cv2.HOGDescriptor()" \
 && ! /opt/framecast/bin/pip check | grep -v -e '^trackers [^ ]* requires opencv-python,' -e '^No broken requirements'

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 PATH=/opt/framecast/bin:$PATH
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin --groups video framecast
COPY --from=build /opt/framecast /opt/framecast
WORKDIR /app
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001
EXPOSE 9100
CMD ["python", "-m", "producer"]
