"""Friction models (DESIGN section 5): named, versioned specs recorded on every row."""

from __future__ import annotations

from dataclasses import dataclass, replace

from harness.costs import CostModel
from harness.errors import ConfigError

FEE_STRESS = 1.5


@dataclass(frozen=True)
class Friction:
    version: str  # the sim_model_version tag
    fee_bps: float  # taker fee per side
    slippage_bps: float  # against you, per side, stops included (v5: where the estimate is unknown)
    funding: bool  # hourly funding on open positions
    next_open: bool  # False: fill at the signal bar's close (legacy only)
    dedup: bool  # v3: one setup key, one trade
    partial: bool  # v4: partial take-profit, stop to breakeven
    trail: bool  # v4: trailing stop
    liquidation: bool  # v4: isolated-margin liquidation
    partial_r: float = 1.5
    partial_frac: float = 0.5
    trail_start_r: float = 2.0
    trail_dist_r: float = 1.0
    costs: CostModel | None = None  # v5: per-coin, per-fill slippage (harness/costs.py)
    stress: float = 1.0  # multiplier already applied to fees and flat slippage

    def stressed(self, mult: float = FEE_STRESS) -> Friction:
        """Same model with fees and slippage multiplied (fee stress; v5's per-coin slippage is
        multiplied in the kernel, after its floor and cap)."""
        return replace(
            self,
            fee_bps=self.fee_bps * mult,
            slippage_bps=self.slippage_bps * mult,
            stress=self.stress * mult,
        )


LEGACY = Friction("legacy_pre_friction_v2", 0.0, 0.0, False, False, False, False, False, False)
V2 = Friction("friction_v2_fee4p5_slip5_funding_hourly", 4.5, 5.0, True, True, False, False, False, False)
V3 = replace(V2, version="friction_v3_dedup", dedup=True)
V4 = replace(V3, version="friction_v4_partial_trail_liq", partial=True, trail=True, liquidation=True)
V5 = replace(V4, version="friction_v5_coin_spread_impact", costs=CostModel())

FRICTIONS = {"legacy": LEGACY, "v2": V2, "v3": V3, "v4": V4, "v5": V5}
DEFAULT_FRICTION = "v5"


def get_friction(name: str | Friction) -> Friction:
    """Accepts a short name (legacy, v2, v3, v4, v5) or the full version tag."""
    if isinstance(name, Friction):
        return name
    if name in FRICTIONS:
        return FRICTIONS[name]
    for spec in FRICTIONS.values():
        if spec.version == name:
            return spec
    raise ConfigError(
        f"unknown friction model {name!r}: use one of {', '.join(FRICTIONS)} "
        f"(or a full tag such as {V5.version})"
    )
