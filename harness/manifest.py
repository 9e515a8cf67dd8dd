"""The freeze: harness/MANIFEST.json holds the sha256 of every harness .py file and the version.

    python -m harness.manifest            # check; exits 1 listing the files that differ
    python -m harness.manifest --write    # regenerate after an intended change (`make manifest`)

`harness_hash()` (a short hash of the manifest and HARNESS_VERSION) goes on every results row;
results with different hashes are never compared or promoted together. It refuses (one line naming
the file) while a harness file differs from the manifest: the freeze is enforced at run time.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from harness import HARNESS_VERSION
from harness.atomic import atomic_write
from harness.errors import HarnessError

HARNESS_DIR = Path(__file__).resolve().parent
MANIFEST_NAME = "MANIFEST.json"
FIX = "run `make manifest` if the change is intended"


# Not frozen: the network client (what it fetched is pinned by the data fingerprint on every
# row, so a retry or paging fix must not make every earlier result incomparable) and the
# command-line error contract (how a failure is printed changes no result).
UNFROZEN = frozenset({"hl_sync.py", "cli.py"})


def _file_hashes(harness_dir: Path) -> dict[str, str]:
    out = {}
    for path in sorted(harness_dir.rglob("*.py")):
        if "__pycache__" in path.parts or path.relative_to(harness_dir).as_posix() in UNFROZEN:
            continue
        out[path.relative_to(harness_dir).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def build(harness_dir: Path = HARNESS_DIR) -> dict:
    return {"version": HARNESS_VERSION, "files": _file_hashes(harness_dir)}


def _render(manifest: dict) -> str:
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def write(harness_dir: Path = HARNESS_DIR) -> Path:
    """Regenerate the manifest atomically (temp file + rename)."""
    target = harness_dir / MANIFEST_NAME
    atomic_write(target, _render(build(harness_dir)))
    harness_hash.cache_clear()
    return target


def load(harness_dir: Path = HARNESS_DIR) -> dict:
    path = harness_dir / MANIFEST_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HarnessError(f"{path} is missing: run `make manifest` to create it") from None
    except json.JSONDecodeError as e:
        raise HarnessError(f"{path} is not valid JSON ({e}): {FIX}") from None


def verify(harness_dir: Path = HARNESS_DIR) -> list[str]:
    """Files that differ from the manifest: changed, added or removed (empty when frozen)."""
    recorded = load(harness_dir).get("files", {})
    actual = _file_hashes(harness_dir)
    return sorted(name for name in set(recorded) | set(actual) if recorded.get(name) != actual.get(name))


def frozen_error(changed: list[str]) -> str:
    """The one line that refuses a run on an edited harness: which files, and the two fixes."""
    names = ", ".join(f"harness/{n}" for n in changed[:3]) + (f" and {len(changed) - 3} more"
                                                              if len(changed) > 3 else "")
    verb = "differs" if len(changed) == 1 else "differ"
    return (f"{names} {verb} from harness/{MANIFEST_NAME}: the harness is frozen; undo the edit "
            "with `git checkout -- harness`, or for an intended change run `make manifest` "
            "(a new harness hash: new studies, earlier results kept apart)")


@lru_cache(maxsize=1)
def harness_hash() -> str:
    """Short hex hash of the manifest contents plus HARNESS_VERSION, recorded on results rows.

    Computed once per process and only when every harness file matches the manifest (otherwise
    HarnessError naming the files and the fix), so no row carries the hash of a harness other
    than the one that produced it. Every command that evaluates calls it first.
    """
    changed = verify()
    if changed:
        raise HarnessError(frozen_error(changed))
    manifest = load()
    h = hashlib.sha256(_render(manifest).encode())
    h.update(HARNESS_VERSION.encode())
    return h.hexdigest()[:12]


def _main() -> None:
    import typer

    def run(
        write_: bool = typer.Option(False, "--write", help="Regenerate MANIFEST.json from the "
                                    "current harness files (after an intended change)."),
    ) -> None:
        """Check the harness against harness/MANIFEST.json, or regenerate it with --write."""
        try:
            if write_:
                path = write()
                typer.echo(f"wrote {path} (harness {HARNESS_VERSION}, hash {harness_hash()})")
                return
            changed = verify()
        except HarnessError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
        if changed:
            typer.echo(f"error: {frozen_error(changed)}", err=True)
            raise typer.Exit(1)
        typer.echo(f"harness {HARNESS_VERSION} matches {MANIFEST_NAME} (hash {harness_hash()})")

    typer.run(run)


if __name__ == "__main__":
    _main()
