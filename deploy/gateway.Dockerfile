# The gateway image: websockets, redis-py, prometheus-client, pyjwt. No OpenCV, no numpy.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY framecast ./framecast
COPY gateway ./gateway
RUN pip install . && useradd --system framecast
USER framecast
EXPOSE 8000
STOPSIGNAL SIGTERM
CMD ["python", "-m", "gateway"]
