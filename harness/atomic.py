"""Atomic file writes, the one home for every writer in the project.

Temp file in the same folder, fsync, rename, fsync the folder: a killed process leaves the old
file or the new one, never half of one (store partitions, results batches, candidates files,
checkpoints, the kill-switch file). Files get the permissions `open()` would give them (0666
less the umask). A temp file names its writer (`.<name>.<random>.<pid>@<host>.tmp`), so the
temp files of writers that were killed are removed the first time a process writes to that
folder.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

HOST = socket.gethostname().replace("/", "_")
_swept: set[str] = set()  # folders whose stale temp files this process removed


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


def umask() -> int:
    """The process umask, read without changing it (Linux), else by setting it back at once."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temp files in `folder` left by atomic writers of this host that are gone."""
    folder = Path(folder)
    suffix = f"@{HOST}.tmp"
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(".") and name.endswith(suffix)):
            continue
        pid = name[: -len(suffix)].rpartition(".")[2]
        if pid.isdigit() and not _alive(int(pid)):
            try:
                (folder / name).unlink()
                removed.append(folder / name)
            except OSError:
                pass
    return removed


def atomic_write(path: str | Path, content: bytes | str | Callable[[BinaryIO], None],
                 mode: int = 0o666) -> Path:
    """Write `content` (bytes, text, or a function writing to the open file) to `path`;
    the file's permissions are `mode` less the umask, as `open()` would make them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if str(path.parent) not in _swept:
        _swept.add(str(path.parent))
        remove_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".{os.getpid()}@{HOST}.tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode & ~umask())  # mkstemp makes 0600
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
