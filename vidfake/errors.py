"""The base classes of vidfake's own errors.

Why a module of its own, at the top of the package: data flows one way (``preprocessing`` ->
``temporal_models`` -> ``vidfake``); the media errors of ``preprocessing`` and the errors of the
application layer (configs, packages) share these bases, which therefore live in no layer.
``vidfake/__init__.py``, which importing this module runs first, is light by design (``os`` only; the
detector loads on first attribute access), so ``preprocessing`` may import ``vidfake.errors`` without
pulling an upper layer in. It imports nothing from vidfake itself; keep it that way. ``temporal_models``
imports nothing from vidfake at all: its ``WeightsError`` is a plain ``RuntimeError``.

The media errors (``MediaError`` and its subclasses) stay in :mod:`vidfake.preprocessing.errors`, which
re-exports these bases.
"""

from __future__ import annotations

__all__ = ["BackendUnavailableError", "SourcedError", "VidfakeError"]


class VidfakeError(Exception):
    """Base class of vidfake's own errors."""


class SourcedError(VidfakeError, ValueError):
    """Something given to vidfake is unusable: the message is ``"<source>: <problem>"``.

    Args:
        source: a printable name of what was given (a file, ``"<bytes>"``, a config, a package).
        problem: what is wrong, in words a user understands.
    """

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class BackendUnavailableError(VidfakeError, ImportError):
    """An optional backend (decord, PyAV, mediapipe) is not installed; the message says what to install."""
