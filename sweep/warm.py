"""`python -m sweep.warm` (run by `make setup`): compile what a first `sweep run` needs, once.

numba compiles the kernel and the indicator functions on their first call and caches the
machine code (`cache=True`); without this step a fresh clone's first run spends its first
minutes compiling before any trial is done. One tiny evaluation of the default strategy under
the default friction (base and stress) on a slice of the embedded market compiles all of it.
"""

from __future__ import annotations

import time


def warm() -> float:
    from harness.evaluate import evaluate
    from harness.folds import Folds
    from harness.sources import load_market
    from strategies.base import get_strategy
    from sweep.study import StudyConfig

    t0 = time.perf_counter()
    strategy = get_strategy(StudyConfig().strategy)
    market = load_market("embedded")
    evaluate(strategy, None, market.slice(0, 2_000), folds=Folds(k=2))
    return time.perf_counter() - t0


if __name__ == "__main__":
    print(f"numba cache warm ({warm():.0f}s)")
