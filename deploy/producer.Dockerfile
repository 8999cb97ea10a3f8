# The producer image: OpenCV (headless) and numpy on top of the shared code.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY framecast ./framecast
COPY producer ./producer
RUN pip install ".[producer]" && useradd --system --groups video framecast
USER framecast
EXPOSE 9100
CMD ["python", "-m", "producer"]
