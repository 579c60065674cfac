"""Coverage: one county's parameters for one alert — its prior (configured, pooled with
the posteriors of its surveyed alerts), the posterior given this alert's surveys, the
registry checks, and the correction when they fail.

When surveys show the registry is suspect (gateway.coverage.survey), the model's C
rests on footprints that are wrong; the surveyed households, a random sample of the
targeted ones, still estimate C without it. The difference estimator

    Ĉ = (Σ_all ŷ_h + N/n · Σ_sample (y_h − ŷ_h)) / residents

(ŷ the model's expected informed residents of household h, y what the survey found, N
households, n surveyed) is unbiased whatever the model's error, with standard error
N·s_e/√n/residents from the residuals' spread s_e. A suspect county's draws are moved
to it and widened by it: the interval widens, and says where the survey puts C.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from gateway.coverage.delivery import Delivered, Prepared
from gateway.coverage.informed import BetaPrior, moments, posterior
from gateway.coverage.survey import Flag, Surveyed, disagreements
from gateway.coverage.v2 import county_of, rng_for
from gateway.directory import Directory

__all__ = ["CountyFit", "fit_county", "pooled_prior"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass
class CountyFit:
    theta: F64  # draws × 6: the posterior where surveyed, else the prior
    prior_theta: F64
    surveyed: int = 0
    flags: list[Flag] = field(default_factory=list)
    # (shift, standard error) of the informed share, applied when the registry is suspect
    correction: tuple[float, float] | None = None
    ess: float = 0.0

    @property
    def record(self) -> tuple[F64, F64]:
        """(mean, variance) of θ: what the county keeps for its next alerts."""
        return self.theta.mean(0), self.theta.var(0)


def pooled_prior(
    ranges: dict[str, tuple[float, float]],
    strength: float,
    past: Sequence[tuple[F64, F64]],
) -> BetaPrior:
    return BetaPrior.from_ranges(ranges).pooled(strength, past)


def fit_county(
    directory: Directory,
    prepared: Prepared,
    final: Delivered,
    county: str,
    prior: BetaPrior,
    survey: Surveyed,
    *,
    alert: str,
    draws: int = 400,
) -> CountyFit:
    """θ for one county of an alert. `survey`: the alert's answers (positions among its
    targeted households); only those of this county's units are used."""
    t = prepared.targets
    prior_theta = prior.draw(rng_for(alert, f"theta|{county}"), draws)
    in_county = np.array(
        [county_of(t.units[int(t.unit_of[p])]) == county for p in survey.positions.tolist()],
        bool,
    )
    if not in_county.any():
        return CountyFit(prior_theta, prior_theta)
    rows = np.flatnonzero(in_county)
    mine = Surveyed(
        survey.positions[rows], survey.informed[rows], [survey.channels[i] for i in rows]
    )
    x = final.exposure.take(mine.positions)
    theta, ess = posterior(
        prior, x, mine.informed, rng_for(alert, f"posterior|{county}"), draws=draws
    )
    flags = disagreements(prepared, final, theta, mine, directory)
    fit = CountyFit(theta, prior_theta, len(rows), flags, None, ess)
    if flags:
        fit.correction = _difference(prepared, final, county, theta, mine)
    return fit


def _difference(
    prepared: Prepared, final: Delivered, county: str, theta: F64, mine: Surveyed
) -> tuple[float, float]:
    """The survey's correction of the county's informed share and its standard error."""
    t = prepared.targets
    in_county = np.array([county_of(u) == county for u in t.units], bool)[t.unit_of]
    households = int(in_county.sum())
    residents = float(t.residents[in_county].sum()) or 1.0
    ex, _ = moments(final.exposure.take(mine.positions), theta)
    residual = mine.informed - ex.mean(axis=1)
    n = len(residual)
    shift = households * float(residual.mean()) / residents
    spread = float(residual.std(ddof=1)) if n > 1 else float(abs(residual).max(initial=1.0))
    se = households * spread / np.sqrt(n) / residents * np.sqrt(max(0.0, 1 - n / households))
    return shift, se
