"""harness/atomic.py and harness/cli.py: files honour the umask, temp files of killed writers are
removed, and no secret is shown or stored (issue 15 items 2 and 10)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from harness import atomic
from harness.cli import redact


@pytest.fixture
def umask():
    """Set the process umask for one test, restored afterwards."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_what_open_would_give_them(tmp_path, umask, mask, mode):
    umask(mask)
    assert atomic.umask() == mask
    path = atomic.atomic_write(tmp_path / "x.json", "{}\n")
    with open(tmp_path / "plain.txt", "w") as fh:  # the reference: a plain open()
        fh.write("x")
    assert stat.S_IMODE(path.stat().st_mode) == mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


def test_temp_files_of_dead_writers_are_removed_on_the_next_write(tmp_path):
    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True, check=True).stdout)  # gone now
    folder = tmp_path / "trials"
    folder.mkdir()
    dead = folder / f".batch.parquet.abc123.{pid}@{atomic.HOST}.tmp"
    live = folder / f".batch.parquet.def456.{os.getpid()}@{atomic.HOST}.tmp"  # a write in flight
    other_host = folder / f".batch.parquet.ghi789.{pid}@elsewhere.example.tmp"
    legacy = folder / ".batch.parquet.jkl012.tmp"  # from before writers were named: unknown owner
    for p in (dead, live, other_host, legacy):
        p.write_bytes(b"half a file")
    atomic.atomic_write(folder / "new.json", "{}\n")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [live.name, other_host.name, legacy.name, "new.json"])


def test_a_failed_write_leaves_no_temp_file(tmp_path):
    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic.atomic_write(tmp_path / "x.bin", boom)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, shown", [
    ("postgresql://ann:pw1@db:5432/x", "postgresql://ann:***@db:5432/x"),
    ("postgresql://:pw2@db/x", "postgresql://:***@db/x"),
    ("postgresql+psycopg://db/x?sslmode=require&password=pw3", "postgresql+psycopg://db/x?sslmode=require&password=***"),
    ("sweep run --storage ann:pw4@db/x --seed 1", "sweep run --storage ann:***@db/x --seed 1"),
    ("--storage=ann:pw5@db/x", "--storage=ann:***@db/x"),
    ("host=db password=pw6 dbname=x", "host=db password=*** dbname=x"),
    ("https://ann:p/w7@proxy.example/info", "https://ann:***@proxy.example/info"),
    ("https://api.hyperliquid.xyz", "https://api.hyperliquid.xyz"),
    ("results/studies/momentum-tpe-s0-1a2b3c4d.journal", "results/studies/momentum-tpe-s0-1a2b3c4d.journal"),
    ("at 12:30 UTC", "at 12:30 UTC"),
])
def test_redact_masks_every_secret_form_and_nothing_else(text, shown):
    assert redact(text) == shown
