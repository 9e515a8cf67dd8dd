"""Optuna storage for a study: a journal file under results/ (several processes on one machine)
or any RDB URL (PostgreSQL: many machines share one study)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from harness.atomic import fsync_path
from harness.errors import ConfigError


def storage_url(storage: str | None, results_dir: Path, study_name: str) -> str:
    """A journal file path or an RDB URL; `postgresql://` uses psycopg 3."""
    if storage is None:
        return str(results_dir / "studies" / f"{study_name}.journal")
    if storage.startswith("postgresql://") or storage.startswith("postgres://"):
        return "postgresql+psycopg://" + storage.split("://", 1)[1]
    return storage


def mask_url(url: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


class BatchSyncedJournal(JournalFileBackend):
    """Optuna's journal file, fsynced once per batch (`sync`) instead of once per operation.

    A trial is ~20 journal operations; an fsync each made the journal, not the kernel, the
    bottleneck (~100 ms a trial here). The ordering durability needs is kept: the journal is
    fsynced after a batch is asked, before its rows are written, so no row names a trial the
    journal could lose; a tell lost to a power cut is re-told from the rows by `reconcile`.
    """

    def __init__(self, path: str, grace_period: int = 10) -> None:
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


def is_journal(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def sync_journal(url: str) -> None:
    """fsync a journal file (no-op for RDB storage, which commits per operation)."""
    if is_journal(url):
        fsync_path(Path(url.removeprefix("file://")))


def open_storage(url: str) -> optuna.storages.BaseStorage:
    if not is_journal(url):
        for attempt in range(5):  # workers starting together race to create Optuna's schema
            try:
                return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
            except Exception as exc:  # sqlalchemy/driver errors: one line, with the masked URL
                last = str(exc).splitlines()[0]
                if "does not exist" in last or "could not translate" in last or "refused" in last:
                    break
                time.sleep(0.5 * (attempt + 1))
        raise ConfigError(f"cannot open storage {mask_url(url)}: {last}")
    path = Path(url.removeprefix("file://"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(BatchSyncedJournal(str(path)))
    except OSError as exc:
        raise ConfigError(f"cannot open journal storage {path}: {exc.strerror}") from None
