"""Child processes of the tests: the environment they get (framecast's own :func:`child_env`)."""

from __future__ import annotations

from framecast.procs import ROOT, child_env

__all__ = ["ROOT", "child_env"]
