"""Test support shared by every test: real processes, real servers, one way to wait.

- :mod:`tests.support.wait`: ``wait_until`` (blocking) and ``poll`` (async), bounded in time and count.
- :mod:`tests.support.procs`: the environment for child processes.
- :mod:`tests.support.redis`: a real valkey-server.
- :mod:`tests.support.gateway`, :mod:`tests.support.producer`: real gateway and producer processes.
- :mod:`tests.support.cluster`, :mod:`tests.support.feed`, :mod:`tests.support.chromium`.
"""
