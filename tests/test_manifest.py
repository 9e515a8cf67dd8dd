"""The freeze: harness files must match harness/MANIFEST.json."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import manifest
from harness.errors import HarnessError

HARNESS = Path(manifest.__file__).resolve().parent


def test_harness_frozen_manifest():
    changed = manifest.verify()
    assert not changed, (
        f"harness files differ from harness/MANIFEST.json: {', '.join(changed)}; "
        "run `make manifest` if the change is intended"
    )


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "harness"
    shutil.copytree(HARNESS, dst, ignore=shutil.ignore_patterns("__pycache__", "MANIFEST.json"))
    manifest.write(dst)
    return dst


def test_manifest_records_sha256_of_every_file(tmp_path):
    dst = _copy(tmp_path)
    data = json.loads((dst / "MANIFEST.json").read_text())
    expected = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in dst.glob("*.py")
                if p.name not in manifest.UNFROZEN}
    assert "hl_sync.py" in manifest.UNFROZEN  # the network client: its fetches are fingerprinted
    assert data["files"] == expected
    assert data["version"]


def test_a_modified_copy_is_detected(tmp_path):
    dst = _copy(tmp_path)
    assert manifest.verify(dst) == []
    with open(dst / "friction.py", "a") as fh:
        fh.write("\n# a silent change\n")
    (dst / "extra.py").write_text("X = 1\n")
    (dst / "errors.py").unlink()
    assert manifest.verify(dst) == ["errors.py", "extra.py", "friction.py"]
    manifest.write(dst)
    assert manifest.verify(dst) == []


def test_missing_manifest_says_how_to_fix(tmp_path):
    dst = _copy(tmp_path)
    (dst / "MANIFEST.json").unlink()
    with pytest.raises(HarnessError, match="make manifest"):
        manifest.verify(dst)


def test_harness_hash_is_short_hex_and_cached():
    h = manifest.harness_hash()
    assert len(h) == 12 and int(h, 16) >= 0
    assert manifest.harness_hash() is h


def test_cli_checks_and_writes(tmp_path):
    dst = _copy(tmp_path)
    (dst / "stats.py").write_text((dst / "stats.py").read_text() + "\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "harness.manifest", *a],  # noqa: E731
                                    cwd=tmp_path, env=env, capture_output=True, text=True)
    res = run()
    assert res.returncode == 1
    assert "stats.py" in res.stderr and "make manifest" in res.stderr
    assert run("--write").returncode == 0
    res = run()
    assert res.returncode == 0, res.stderr
