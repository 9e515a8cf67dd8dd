"""`<results>/paper_ledgers.txt`: the paper ledgers `python -m sweep sql` exposes as views.

The executor registers each ledger it writes; sweep reads the list. One path per line.
"""

from __future__ import annotations

from pathlib import Path

from harness.atomic import atomic_write

LEDGERS_FILE = "paper_ledgers.txt"


def register_ledger(results_dir: Path, ledger: Path) -> None:
    """Add a ledger to `<results>/paper_ledgers.txt` (atomic rewrite, once per path)."""
    target = Path(results_dir) / LEDGERS_FILE
    have = [p for p in target.read_text().splitlines() if p] if target.exists() else []
    path = str(Path(ledger).resolve())
    if path in have:
        return
    atomic_write(target, "\n".join(have + [path]) + "\n")


def ledger_paths(results_dir: Path) -> list[Path]:
    target = Path(results_dir) / LEDGERS_FILE
    if not target.exists():
        return []
    return [Path(p) for p in target.read_text().splitlines() if p and Path(p).is_file()]
