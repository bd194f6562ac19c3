"""Whole-or-nothing file writes: every file mupc-sweep writes (records, curves, the kept spec,
failure notes, figures, the dataset cache) goes through `write_atomic`."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(target: Path, write: Callable[[BinaryIO], None], *, replace: bool = True) -> Path:
    """Write `target` whole or not at all: `write` fills a temporary file beside it, which is
    flushed to disk, renamed over `target` (or, with `replace` False, linked there, so that an
    existing file is never overwritten: FileExistsError), and the folder synced so the rename
    survives a crash. The file gets the permissions of an ordinary new file (0666 less the umask)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # not mkstemp's owner-only 0600
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)
            os.unlink(tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return target


def write_text_atomic(target: Path, text: str) -> Path:
    """`write_atomic` of UTF-8 text."""
    return write_atomic(target, lambda out: out.write(text.encode()))
