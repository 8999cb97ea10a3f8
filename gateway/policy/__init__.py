"""The fan-out policy, sans I/O (see :mod:`gateway.policy.facade`)."""

from gateway.policy.facade import *  # noqa: F403
from gateway.policy.facade import __all__  # noqa: F401
