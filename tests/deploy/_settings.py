"""What the deployment files may set: the components' real settings (framecast.settings names)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from gateway.config import GatewayConfig
from producer.config import Config as ProducerConfig

_SPECIAL = {"redis_url": "REDIS_URL"}


def env_names(config: type[GatewayConfig] | type[ProducerConfig]) -> set[str]:
    """Every variable the component reads: FRAMECAST_<FIELD>, or the field's own name (REDIS_URL)."""
    return {_SPECIAL.get(f.name, "FRAMECAST_" + f.name.upper()) for f in dataclasses.fields(config)}


def unknown(env: Mapping[str, str], config: type[GatewayConfig] | type[ProducerConfig]) -> set[str]:
    """Variables in ``env`` that look like framecast settings but are none of ``config``'s."""
    names = env_names(config)
    return {k for k in env if (k.startswith("FRAMECAST_") or k == "REDIS_URL") and k not in names}


def default(config: type[GatewayConfig] | type[ProducerConfig], name: str) -> object:
    """The default of one setting."""
    return next(f.default for f in dataclasses.fields(config) if f.name == name)
