"""Coverage: the share of the affected population reached — pure functions of the
directory, the plan and what receipts, acknowledgements and surveys said.

Two definitions (docs/coverage.md):

- `warngate-coverage-v2` where the directory has households: D, delivery coverage,
  an exact union over households of every confirmed footprint (`delivery`), beside
  it D with unconfirmed sends weighted by the measured P(delivered | no receipt);
  C, persons informed, from a person-level model whose parameters have per-county
  priors and survey posteriors, as a median and a 90 % interval (`informed`).
- `warngate-coverage-v1` for directories without households (`v1`): per-channel
  persons summed and capped, combined as if channels were independent. Its lower and
  upper figures are what it would read if the channels had reached the same or
  different people — not bounds on the truth.
"""

from gateway.coverage.v1 import (
    DEFINITION,
    SERIES_MINUTES,
    AlertCoverage,
    UnitCoverage,
    alert_coverage,
    broadcast_coverage,
    combine,
    rollup_broadcast,
    verdict,
)

DEFINITION_V1 = DEFINITION
DEFINITION_V2 = "warngate-coverage-v2"

__all__ = [
    "DEFINITION",
    "DEFINITION_V1",
    "DEFINITION_V2",
    "SERIES_MINUTES",
    "AlertCoverage",
    "UnitCoverage",
    "alert_coverage",
    "broadcast_coverage",
    "combine",
    "rollup_broadcast",
    "verdict",
]
