"""Optuna storage for a study: a journal file under results/ (several processes on one machine)
or any RDB URL (PostgreSQL: many machines share one study)."""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from harness.atomic import atomic_write, fsync_path
from harness.cli import redact
from harness.errors import ConfigError

DEFAULT_TIMEOUT = 10.0  # seconds to connect to an RDB storage (`--storage-timeout`)
LOCK_GRACE = 10  # seconds before a journal lock left by a killed process is broken


def storage_url(storage: str | None, results_dir: Path, study_name: str) -> str:
    """A journal file path or an RDB URL; `postgresql://` uses psycopg 3."""
    if storage is None:
        return str(results_dir / "studies" / f"{study_name}.journal")
    if storage.startswith("postgresql://") or storage.startswith("postgres://"):
        return "postgresql+psycopg://" + storage.split("://", 1)[1]
    return storage


class BatchSyncedJournal(JournalFileBackend):
    """Optuna's journal file, fsynced once per batch (`sync`) instead of once per operation.

    A trial is ~20 journal operations; an fsync each made the journal, not the kernel, the
    bottleneck (~100 ms a trial here). The ordering durability needs is kept: the journal is
    fsynced after a batch is asked, before its rows are written, so no row names a trial the
    journal could lose; a tell lost to a power cut is re-told from the rows by `reconcile`.
    """

    def __init__(self, path: str, grace_period: int = LOCK_GRACE) -> None:
        self._path_ = path
        self._lock_ = JournalFileSymlinkLock(path, grace_period=grace_period)
        super().__init__(path, lock_obj=self._lock_)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        payload = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
        self._lock_.acquire()
        try:
            with open(self._path_, "ab") as fh:
                fh.write(payload.encode("utf-8"))
        finally:
            self._lock_.release()


def recorded_storage(url: str) -> str:
    """The storage as a `runs` row records it: a journal as an absolute path (promote may run
    from another folder), an RDB URL with its password masked (`reopen_url` undoes the mask)."""
    if is_journal(url):
        return str(Path(url.removeprefix("file://")).resolve())
    return redact(url)


def reopen_url(recorded: str) -> str:
    """A recorded RDB URL without its masked password: the driver then reads it from
    PGPASSWORD or ~/.pgpass, as libpq does."""
    url = recorded.replace(":***@", "@")
    return re.sub(r"([?&])password=\*\*\*&?", r"\1", url).rstrip("?&")


def is_journal(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def sync_journal(url: str) -> None:
    """fsync a journal file (no-op for RDB storage, which commits per operation)."""
    if is_journal(url):
        fsync_path(Path(url.removeprefix("file://")))


def check_storage_url(url: str) -> None:
    """A journal path, or an RDB URL that parses (ConfigError naming it otherwise)."""
    if not is_journal(url):
        _endpoint(url)


def _endpoint(url: str) -> tuple[str, str | None]:
    """'host:port' of an RDB URL and the driver's connect-timeout argument name, if it has one."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:  # sqlalchemy.exc.ArgumentError: not a URL at all
        raise ConfigError(f"--storage {redact(url)} is neither a journal file path nor an RDB URL "
                          "(e.g. postgresql://user@host/db)") from None
    backend = u.get_backend_name()
    port = u.port or {"postgresql": 5432, "mysql": 3306}.get(backend)
    where = f"{u.host or 'localhost'}:{port}" if port else (u.host or u.database or "")
    return where, {"postgresql": "connect_timeout", "mysql": "connect_timeout"}.get(backend)


def _open_rdb(url: str, timeout: float) -> RDBStorage:
    """RDBStorage, after one connection within `timeout` seconds: a server that accepts TCP but
    never answers is refused with one line naming it instead of hanging the run."""
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    where, key = _endpoint(url)
    connect_args = {key: max(1, math.ceil(timeout))} if key else {}
    try:
        probe = sqlalchemy.create_engine(url, connect_args=connect_args, poolclass=NullPool)
        with probe.connect():
            pass
        probe.dispose()
    except Exception as exc:  # sqlalchemy/driver errors: one line, the URL masked
        text = str(getattr(exc, "orig", None) or exc)
        if "timeout" in text.lower():
            raise ConfigError(f"storage {where} did not answer within {timeout:g} s: check that the "
                              "database server is up and reachable, or raise --storage-timeout") from None
        raise ConfigError(f"cannot open storage {redact(url)} ({where}): {text.splitlines()[0]}") from None
    last = ""
    for attempt in range(5):  # workers starting together race to create Optuna's schema
        try:
            return RDBStorage(url, engine_kwargs={"pool_pre_ping": True, "connect_args": connect_args})
        except Exception as exc:
            last = str(exc).splitlines()[0]
            time.sleep(0.5 * (attempt + 1))
    raise ConfigError(f"cannot open storage {redact(url)} ({where}): {last}")


def repair_torn_tail(path: Path, warn: Callable[[str], None]) -> Path | None:
    """A journal whose last line was cut (a crash inside a write) has that partial line moved to
    `<journal>.torn-<time>` and the journal truncated after its last complete line; one warning.

    Done under the journal's lock, so no writer is mid-append. Safe: a cut line was never
    fsynced, and nothing after it exists; a trial whose tell was lost stays RUNNING and is
    told again from its rows (`reconcile`). Returns where the partial line went (None: intact).
    """
    lock = JournalFileSymlinkLock(str(path), grace_period=LOCK_GRACE)
    lock.acquire()
    try:
        with open(path, "rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return None
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return None
            cut, pos = 0, size
            while pos > 0:  # the byte after the last newline
                step = min(pos, 1 << 16)
                fh.seek(pos - step)
                i = fh.read(step).rfind(b"\n")
                if i >= 0:
                    cut = pos - step + i + 1
                    break
                pos -= step
            fh.seek(cut)
            tail = fh.read()
            aside = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")
            atomic_write(aside, tail)
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        lock.release()
    warn(f"warning: {path}: its last line was cut by a crash ({len(tail)} bytes, never synced); "
         f"moved to {aside}, the study resumes without it")
    return aside


def _bad_line(path: Path) -> int:
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, start=1):
            try:
                json.loads(line)
            except ValueError:
                return n
    return 0


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def open_storage(url: str, timeout: float = DEFAULT_TIMEOUT,
                 warn: Callable[[str], None] = _warn) -> optuna.storages.BaseStorage:
    """The study's storage; RDB connections time out after `timeout` seconds, a journal's torn
    tail is repaired (`repair_torn_tail`) and a journal corrupt elsewhere is refused."""
    if not is_journal(url):
        return _open_rdb(url, timeout)
    path = Path(url.removeprefix("file://"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = BatchSyncedJournal(str(path))
        repair_torn_tail(path, warn)
        return JournalStorage(backend)
    except OSError as exc:
        raise ConfigError(f"cannot open journal storage {path}: {exc.strerror}") from None
    except ValueError:  # Optuna read a line that is not a journal record
        raise ConfigError(
            f"journal {path} is corrupt at line {_bad_line(path)} (not a journal record, with "
            "records after it): Optuna cannot replay it. Move the file aside and run with a new "
            "--study (the trials it held stay in the results tables)") from None
