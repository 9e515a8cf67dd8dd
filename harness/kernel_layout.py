"""The layout of the kernel's arrays: index names of its params vector, per-segment stats,
slot tables and trade records, and the vocabularies of exit reasons and fill statuses.

Plain ints, so numba folds them; harness/kernel_nb.py's docstring says what each one means.
"""

import numpy as np

EXIT_REASONS = (
    "stop", "target", "partial", "trail", "signal", "time",
    "liquidation", "backstop", "kill_switch", "end_of_data",
)
R_STOP, R_TARGET, R_PARTIAL, R_TRAIL, R_SIGNAL, R_TIME, R_LIQ, R_BACKSTOP, R_KILL, R_END = range(10)

# params vector
(P_INIT, P_RISK, P_SIZING, P_FRACTION, P_MAXPOS, P_MAXLEV, P_POSLEV, P_DAILY, P_KILL, P_FEE,
 P_SLIP, P_FUNDING, P_NEXT_OPEN, P_DEDUP, P_PARTIAL, P_TRAIL, P_LIQ, P_PART_R, P_PART_FRAC,
 P_TRAIL_START, P_TRAIL_DIST, P_COIN_SLIP, P_SLIP_FLOOR, P_SLIP_CAP, P_STRESS) = range(25)
N_PARAMS = 25
SIZING_RISK, SIZING_FRACTION = 0, 1

# per-segment stats
(S_FINAL, S_MAXDD, S_NTRADES, S_WINS, S_SUMR, S_FEES, S_FUNDING, S_EXPO, S_BARS, S_NLIQ,
 S_KILLED, S_HALTS, S_HHI, S_SLIPCOST, S_NBACKSTOP, S_DETAIL, S_DETAIL_MISSING,
 S_SLIP_FALLBACK) = range(18)
N_STATS = 18

# slot floats (F_QLO/F_QHI: a bar with low > F_QLO and high < F_QHI touches no level)
(F_SIZE, F_SIZE0, F_ENTRY, F_R, F_STOP, F_TARGET, F_PART, F_BEST, F_TRAILD, F_LIQ, F_BACK,
 F_MARGIN, F_FEES, F_FUND, F_PGROSS, F_NOTIONAL0, F_QLO, F_QHI, F_ENTRY_FEE, F_ENTRY_SLIP,
 F_PART_PRICE, F_PART_QTY, F_PART_FEE, F_PART_SLIP, F_SLIPCOST) = range(25)
NSF = 25
# slot ints (I_COIN < 0: free slot)
(I_COIN, I_SIDE, I_SIGBAR, I_FILLBAR, I_HOLD_UNTIL, I_KIND, I_REQ, I_PARTIAL, I_PART_BAR,
 I_DETAIL, I_EXIT_SUB) = range(11)
NSI = 11

FILL_STATUS = (
    "filled", "position_open", "no_slot", "gross_cap", "dedup", "daily_halt", "kill_switch",
    "no_price", "no_equity", "end_of_segment", "outside",
)
(ST_FILLED, ST_POSITION, ST_NO_SLOT, ST_GROSS_CAP, ST_DEDUP, ST_HALT, ST_KILL, ST_NO_PRICE,
 ST_NO_EQUITY, ST_END, ST_OUTSIDE) = range(11)

# trade record fields (float64); prices are fill prices (slippage applied), slippage fractions
(T_COIN, T_SIDE, T_SIGBAR, T_ENTRYBAR, T_EXITBAR, T_ENTRY, T_EXIT, T_SIZE, T_NOTIONAL, T_STOP,
 T_R, T_PNL, T_FEES, T_FUNDING, T_REASON, T_PARTIAL, T_SEG, T_EXIT_AT_OPEN, T_ENTRY_FEE,
 T_ENTRY_SLIP, T_PART_BAR, T_PART_PRICE, T_PART_QTY, T_PART_FEE, T_PART_SLIP, T_EXIT_QTY,
 T_EXIT_FEE, T_EXIT_SLIP, T_SLIPCOST, T_DETAIL, T_EXIT_SUB) = range(31)
N_TRADE_FIELDS = 31

NO_BAR = np.int64(1) << 62
