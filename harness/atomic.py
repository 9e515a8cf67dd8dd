"""Atomic file writes, the one home for every writer in the project.

Temp file in the same folder, fsync, rename, fsync the folder: a killed process leaves the old
file or the new one, never half of one (store partitions, results batches, candidates files,
checkpoints, the kill-switch file).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq


def fsync_path(path: str | Path) -> None:
    """fsync a file or folder (a folder after a rename makes the rename durable)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, content: bytes | str | Callable[[BinaryIO], None],
                 mode: int = 0o644) -> Path:
    """Write `content` (bytes, text, or a function writing to the open file) to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)  # mkstemp makes 0600; readers may run as another user
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode() if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


def atomic_write_parquet(table: pa.Table, path: str | Path) -> Path:
    return atomic_write(path, lambda fh: pq.write_table(table, fh, compression="zstd"))


def atomic_write_json(obj: Any, path: str | Path) -> Path:
    return atomic_write(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
