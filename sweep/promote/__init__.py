"""The promotion gate (DESIGN sections 7 and 9): which buckets may trade, and why.

It must say no to noise AND yes to a real edge, so evidence is tested where it lives:
the study (DSR of the selected trial against the trial Sharpes, Hansen's SPA over every trial,
P(OOS loss) from CSCV), the bucket (n, t, a one-sided t-test corrected over every bucket the
run examined, fee stress), and the lockbox (read once per candidate, logged before use).

Modules, in the order a run uses them: eligible (which trials, which market), evidence
(the numbers), gates (the thresholds, first failure and by how much; fee stress), lockbox
(the one read), writer (the candidates file and the `promotions` rows), run (the whole run).
"""

from sweep.promote.eligible import PromoteError, Skip, TrialRef
from sweep.promote.run import PromotionReport, run_promotion
from sweep.promote.writer import KillSpec

__all__ = ["KillSpec", "PromoteError", "PromotionReport", "Skip", "TrialRef", "run_promotion"]
