"""Does a results folder hold every trial its studies finished? (DESIGN section 7: N counts
every trial.)

A worker writes a batch's rows before it tells Optuna the batch is finished (sweep.study), so
every trial a study's storage calls finished has rows in the results folder of the worker that
ran it. A folder holding fewer means some worker wrote elsewhere (a machine with its own local
`results/`): the trial count N would be too small, which flatters every candidate, and the
buckets would miss that worker's trades. Wherever N or evidence is computed (promote,
leaderboard, calibrate through promote) that is an error naming both counts, never a silent
undercount. More rows than finished trials is fine: a trial whose rows were written and whose
tell was lost to a kill stays RUNNING until the next start reconciles it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.cli import redact
from harness.errors import HarnessError
from sweep import results
from sweep.storage import is_journal, reopen_url, storage_url


class CoverageError(HarnessError):
    """The results folder lacks finished trials of a study, or they cannot be counted."""


@dataclass(frozen=True)
class Coverage:
    study: str
    storage: str  # as recorded (journal path, or RDB URL with the password masked)
    finished: int  # trials the study's Optuna storage calls finished
    rows: int  # of those, the trials with rows in this results folder
    results_dir: Path

    @property
    def missing(self) -> int:
        return self.finished - self.rows


def storages(results_dir: Path, studies: Iterable[str]) -> dict[str, list[str]]:
    """Study -> the Optuna storages its `run` rows recorded (usually one)."""
    names = sorted(set(studies))
    if not names or not results.has_rows(results_dir, "runs"):
        return {}
    df = results.query(results_dir, "SELECT DISTINCT study, storage FROM runs WHERE command = 'run' "
                       "AND study IN (SELECT unnest(?)) AND storage IS NOT NULL ORDER BY storage",
                       [names])
    out: dict[str, list[str]] = {}
    for study, storage in zip(df["study"], df["storage"], strict=True):
        out.setdefault(str(study), []).append(str(storage))
    return out


def _url(recorded: str, study: str, results_dir: Path, override: str | None) -> str:
    if override:
        return storage_url(override, results_dir, study)
    if not is_journal(recorded):
        return reopen_url(recorded)
    path = Path(recorded.removeprefix("file://"))
    local = results_dir / "studies" / f"{study}.journal"  # a results folder moved with its journals
    if not path.is_absolute() or not path.exists():
        path = local if local.exists() else path
    if not path.exists():
        raise CoverageError(f"study {study}: its Optuna journal {recorded} is gone, so its finished "
                            "trials cannot be counted against the rows: pass --storage with the "
                            "study's journal or database URL")
    return str(path)


def coverage(results_dir: Path, studies: Iterable[str], storage: str | None = None) -> list[Coverage]:
    """Finished trials in each Optuna study (of `sweep run`) against its rows in `results_dir`.

    `storage` replaces the storage the runs recorded (an RDB URL with its password, for one);
    studies without a `run` row (scan, noise) have no Optuna storage and are not checked.
    """
    from sweep.optuna_trials import load_finished

    results_dir = Path(results_dir)
    names = sorted(set(studies))
    if not names or not results.has_rows(results_dir, "trials"):
        return []
    rows = results.query(results_dir, "SELECT study, list(DISTINCT trial) AS trials FROM trials "
                         "WHERE command = 'run' AND study IN (SELECT unnest(?)) GROUP BY study", [names])
    have = {str(s): {int(t) for t in ts} for s, ts in zip(rows["study"], rows["trials"], strict=True)}
    where = storages(results_dir, have)
    out = []
    for study in sorted(have):
        if study not in where:
            raise CoverageError(f"study {study} has trial rows in {results_dir} but no `runs` row "
                                "naming its Optuna storage: its finished trials cannot be counted")
        for recorded in dict.fromkeys([storage] if storage else where[study]):
            url = _url(recorded, study, results_dir, storage)
            try:
                finished = load_finished(url, study)
            except HarnessError as exc:
                raise CoverageError(f"study {study}: cannot count its finished trials: {exc} (pass "
                                    "--storage with the study's URL; a database password can come "
                                    "from PGPASSWORD or ~/.pgpass)") from None
            out.append(Coverage(study, redact(recorded), len(finished), len(finished & have[study]),
                                results_dir))
    return out


def require_complete(results_dir: Path, studies: Iterable[str], storage: str | None = None) -> list[Coverage]:
    """`coverage`, raising CoverageError (one line, both counts, the fix) on a shortfall."""
    found = coverage(results_dir, studies, storage)
    short = [c for c in found if c.missing > 0]
    if short:
        c = max(short, key=lambda c: c.missing)
        more = f" (and {len(short) - 1} other stud{'y' if len(short) == 2 else 'ies'})" if len(short) > 1 else ""
        raise CoverageError(
            f"study {c.study}: its Optuna storage {c.storage} holds {c.finished} finished trials, "
            f"but {c.results_dir} has rows for only {c.rows} of them{more}: the other {c.missing} were "
            "written by workers with another results folder; point --results at the shared folder "
            "every worker writes to (one folder that every machine mounts)")
    return found
