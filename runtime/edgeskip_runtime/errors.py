"""The one base class of edgeskip's domain errors, shared by the board runtime and the design-time package.

An :class:`EdgeskipError` means "the input, a file, a board or the environment is not as it must be",
and its message says what. The command lines (``edgeskip``, ``edgeskip-runtime``) show it as one line
with exit code 1. Any other exception is a bug and keeps its traceback: a bare ``ValueError`` or
``KeyError`` from deep inside is never mistaken for the user's fault.

Library messages never name command-line flags, because the library is called from Python too. An error
about one setting names it in ``setting`` (the Python name, e.g. ``"data_dir"``), and the command line
adds its own flag for it (``--data-dir``).

This module imports nothing, so the torch-free commands stay torch-free.
"""

from __future__ import annotations


class EdgeskipError(Exception):
    """Base of every domain error. ``setting``: the argument or option the error is about, if one is."""

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting


class UsageError(EdgeskipError, ValueError):
    """An argument or setting has a value that cannot work (also a ``ValueError``, which it is)."""


class FileFormatError(EdgeskipError, ValueError):
    """A file edgeskip reads is missing, unreadable, or not in its documented format."""


__all__ = ["EdgeskipError", "FileFormatError", "UsageError"]
