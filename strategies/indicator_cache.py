"""A bounded per-process cache of indicator results (strategies/indicators.py uses it).

Key: the indicator and its parameters, plus the identity of its input arrays. Only read-only
inputs are cached (a `columnar` market's arrays, or results of this cache, which it returns
read-only): their contents cannot change under the key. Each entry holds weak references to
its inputs and is dropped when one dies, so nothing is kept for a market that is gone and an
id reused by a new array never hits an old entry. Least recently used entries go first once
the cache holds more than `max_bytes`.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

DEFAULT_MB = 256  # ~55 arrays of 116 coins x 5,000 hourly bars (a sweep worker keeps it)


def _frozen(arr: Any) -> bool:
    """Read-only all the way down (a read-only view of a writeable array can still change)."""
    if not isinstance(arr, np.ndarray):
        return False
    while isinstance(arr, np.ndarray):
        if arr.flags.writeable:
            return False
        arr = arr.base
    return True


def _nbytes(value: Any) -> int:
    return sum(v.nbytes for v in value) if isinstance(value, tuple) else value.nbytes


def _freeze(value: Any) -> None:
    for v in value if isinstance(value, tuple) else (value,):
        while isinstance(v, np.ndarray):
            v.flags.writeable = False
            v = v.base


class IndicatorCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[tuple, Any]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple, inputs: tuple, compute: Callable[[], Any]) -> Any:
        """compute(), or its cached result for these parameters and inputs."""
        if self.max_bytes <= 0 or not all(map(_frozen, inputs)):
            return compute()
        full = key + tuple(id(a) for a in inputs)
        hit = self._entries.get(full)
        if hit is not None and all(r() is a for r, a in zip(hit[0], inputs, strict=True)):
            self._entries.move_to_end(full)
            self.hits += 1
            return hit[1]
        self.misses += 1
        value = compute()
        _freeze(value)
        size = _nbytes(value)
        if size > self.max_bytes:
            return value
        self._drop(full)
        refs = tuple(weakref.ref(a, lambda _, k=full: self._drop(k)) for a in inputs)
        self._entries[full] = (refs, value)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        return value

    def _drop(self, full: tuple) -> None:
        entry = self._entries.pop(full, None)
        if entry is not None:
            self.bytes -= _nbytes(entry[1])

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def stats(self) -> dict[str, float]:
        n = self.hits + self.misses
        return {"mb": round(self.bytes / 2**20, 1), "entries": len(self._entries),
                "hits": self.hits, "misses": self.misses,
                "hit_rate": round(self.hits / n, 4) if n else 0.0}


CACHE = IndicatorCache(DEFAULT_MB * 2**20)
