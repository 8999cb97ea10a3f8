"""Running framecast on one machine: ``framecast up`` and what it is made of.

The topology's children and how each is launched, the supervisor that keeps them running,
the embedded valkey and nginx of the ``local`` extra, the nginx configuration (shared with
docker-compose.yml), Prometheus for ``--monitoring``, the camera file and its shared
predictors, and the ports the servers that cannot bind port 0 take.
"""
