"""What makes two runs the same study: the code they run, the harness, the data and the folds.

A rerun of the same command on the same code and data derives the same study name (so it
resumes); an explicit `--study` holding trials of another identity is refused, since their
scores are not comparable.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import ConfigError
from sweep import results

if TYPE_CHECKING:
    import optuna

    from harness.folds import Folds
    from strategies.base import RegisteredStrategy
    from sweep.study import Context, StudyConfig
    from sweep.trial_rows import Provenance

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = ("strategy", "harness_hash", "data_fingerprint", "sim_model_version", "interval",
            "folds", "code_hash", "mode", "detail", "search_space")


def _strategy_files(module: str) -> list[Path]:
    """The strategy's module and every strategies.* module it imports, transitively."""
    import ast

    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or not name.startswith("strategies"):
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, AttributeError, ValueError):  # `from pkg.mod import function`
            spec = None
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        path = Path(spec.origin)
        seen[name] = path
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                todo.append(node.module)
                todo += [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:  # relative: resolve
                pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{node.module}" if node.module else pkg
                todo.append(base)
                todo += [f"{base}.{a.name}" for a in node.names]
    return [seen[k] for k in sorted(seen)]


def code_hash(strategy: RegisteredStrategy | None = None) -> str:
    """What the research loop may edit: all of strategies/ and sweep/space.py, or with a strategy
    only what it runs (its strategies/ modules, found through their imports, and space.py)."""
    if strategy is None:
        files = [p for p in sorted((ROOT / "strategies").rglob("*.py")) if "__pycache__" not in p.parts]
    else:
        files = _strategy_files(strategy.generate_fn.__module__)
    h = hashlib.sha256()
    for p in files + [ROOT / "sweep" / "space.py"]:
        h.update(p.relative_to(ROOT).as_posix().encode() if p.is_relative_to(ROOT) else p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def default_study_name(cfg: StudyConfig, prov: Provenance, folds: Folds, chash: str,
                       interval: str) -> str:
    """Same command, code and data -> same study (so a rerun resumes); any change -> a new one."""
    key = [prov.harness_hash, prov.data_fingerprint, prov.sim_model_version, interval,
           asdict(folds), chash, cfg.fixed, cfg.mode] + ([cfg.detail] if cfg.detail else [])
    key = results.to_json(key)
    return f"{cfg.strategy}-{cfg.sampler}-s{cfg.seed}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def identity(ctx: Context) -> dict[str, Any]:
    """The study's identity as Optuna user attributes (recorded on the study when created)."""
    return {"strategy": ctx.strategy.name, "harness_hash": ctx.prov.harness_hash,
            "data_fingerprint": ctx.prov.data_fingerprint,
            "sim_model_version": ctx.friction_version, "interval": ctx.cfg.interval,
            "folds": results.to_json(asdict(ctx.folds)), "code_hash": ctx.code_hash,
            "mode": ctx.cfg.mode, "detail": ctx.cfg.detail or "",
            "search_space": results.to_json(ctx.space.to_json())}


def _shown(key: str, value: Any) -> str:
    """An identity value as the refusal shows it; a search space as its fixed parameters."""
    if key != "search_space":
        return str(value)
    fixed = {k: v["fixed"] for k, v in json.loads(value).items() if "fixed" in v}
    return "--fix " + (",".join(f"{k}={v}" for k, v in sorted(fixed.items())) or "(none)")


def check_identity(study: optuna.Study, ctx: Context) -> None:
    """Refuse a study created with another identity; record the attributes it lacks."""
    want = identity(ctx)
    have = study.user_attrs
    diff = [k for k in IDENTITY if k in have and have[k] != want[k]]
    if diff:
        raise ConfigError(
            f"study {ctx.study_name} was created with another {', '.join(diff)} "
            f"({'; '.join(f'{k}: {_shown(k, have[k])} -> {_shown(k, want[k])}' for k in diff)}); "
            "its trials are not comparable: use a new --study (or drop --study)"
        )
    for k in IDENTITY:  # another worker may be writing them right now: same values, no harm
        if k not in have:
            study.set_user_attr(k, want[k])
