"""Atomic artifact writes: a reader sees the old file or the new one, never half of one.

Directories (bundles) are swapped by :func:`replace_dir`, the one place that does it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        write(f)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    data = (json.dumps(obj, indent=2) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def write_text(path: str | os.PathLike[str], text: str) -> None:
    data = text.encode()
    atomic_write(path, lambda f: f.write(data))


def replace_dir(new: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Put the finished directory ``new`` (a sibling of ``dest``) at ``dest``, replacing what is there.

    The files of ``new`` are synced first, then two renames: ``dest`` to ``DEST.previous``, ``new`` to
    ``dest``. A directory cannot be renamed over a non-empty one, so for a moment ``dest`` does not exist;
    a crash in that moment leaves the complete old directory at ``DEST.previous``, never a mix of the two.
    """
    new, dest = Path(new), Path(dest)
    for f in new.rglob("*"):
        if f.is_file() and not f.is_symlink():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    backup = dest.with_name(dest.name + ".previous")
    if backup.exists():
        shutil.rmtree(backup)
    if dest.exists():
        os.rename(dest, backup)
    os.rename(new, dest)
    shutil.rmtree(backup, ignore_errors=True)
