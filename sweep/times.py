"""A time the user typed (--at, --start, --end) as a UTC timestamp: one parser, one message."""

from __future__ import annotations

import pandas as pd

from harness.errors import ConfigError


def utc_time(text: str, option: str) -> pd.Timestamp:
    """`text` as a UTC timestamp (a time without zone is UTC); ConfigError naming `option`."""
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        ts = pd.NaT
    if ts is pd.NaT:
        raise ConfigError(f"{option} {text!r} is not a time: use ISO 8601, e.g. 2025-03-01 or "
                          "2025-03-01T12:00 (UTC)")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
