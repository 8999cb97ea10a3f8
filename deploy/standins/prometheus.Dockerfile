# Stand-in for prom/prometheus where no registry is reachable: Debian's prometheus (2.42, which
# reads the same prometheus.yml and alerts.yml) and wget (the healthcheck's client, busybox's in
# the official image) on the local python:3.11-slim stand-in, with the official image's
# entrypoint, command, user and data directory.
FROM python:3.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /prometheus \
    && chown nobody:nogroup /prometheus \
    && prometheus --version
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
