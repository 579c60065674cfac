"""Coverage: C, persons informed — a person-level model with priors and survey posteriors.

Each resident of a targeted household learns of the warning *directly* with
probability q, independently of the others given the parameters θ:

    at home (1 − away), and heard one of the L plays of loudspeakers whose footprint
    holds the household (each heard with `hear`), saw one of S screens (`see`), or was
    there when a messenger called (`visit`);
    or owns one of the household's phones whose message arrived, and read it (`read`).

Sends without a receipt count with the measured P(delivered | no receipt), p, of
their channel: a play heard with p·hear, a phone read with p·read. A resident not
informed directly is told by the household with probability `tell` if at least one
member was informed directly (one round). For a household of n with m direct, the
informed X = m + Binomial(n − m, tell)·[m ≥ 1]; its mean and variance follow in closed
form from P(m = 0), E m and E m² (`moments`), and its distribution by a short
recursion over the residents (`household_pmf`, for surveys).

θ = (away, hear, see, read, tell, visit) has a prior per county (policy.yaml
`coverage.priors`, ranges read as the middle and spread of a Beta distribution);
post-alert surveys of households give a posterior by importance sampling. C of a unit
is the sum over its households, drawn for many θ (parameter uncertainty) with the
households' own randomness added (a normal draw of their summed variance); the 90 %
interval is the 5th to 95th percentile of those draws.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "PARAMETERS",
    "BetaPrior",
    "Exposure",
    "household_pmf",
    "log_likelihood",
    "moments",
    "posterior",
]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
PARAMETERS = ("away", "hear", "see", "read", "tell", "visit")
AWAY, HEAR, SEE, READ, TELL, VISIT = range(6)


@dataclass(frozen=True)
class Exposure:
    """Households' exposure by one minute, one row per household (or per profile):
    residents; confirmed plays, screens, visits, phones; unconfirmed ones; the weight
    of a count-only messenger visit (0–1); and the p of unconfirmed sends."""

    residents: I64
    plays: I64  # confirmed loudspeaker plays (repeats included) within earshot
    plays_unconfirmed: I64
    screens: I64
    screens_unconfirmed: I64
    visited: I64  # 0/1: a messenger named the household
    visit_weight: F64  # a messenger reported only a count for its cell
    phones: I64  # phones whose message was confirmed delivered
    phones_unconfirmed: I64
    p_play: float = 1.0  # P(played | fetched, no receipt)
    p_screen: float = 1.0
    p_phone: float = 1.0  # P(delivered | sent, no receipt), over the unconfirmed phones

    def take(self, rows: I64) -> Exposure:
        return Exposure(
            self.residents[rows], self.plays[rows], self.plays_unconfirmed[rows],
            self.screens[rows], self.screens_unconfirmed[rows], self.visited[rows],
            self.visit_weight[rows], self.phones[rows], self.phones_unconfirmed[rows],
            self.p_play, self.p_screen, self.p_phone,
        )  # fmt: skip


def _direct(x: Exposure, theta: F64) -> tuple[F64, F64, F64, F64, F64, F64]:
    """(q without phone, q with a confirmed phone, q with an unconfirmed phone, and the
    counts of each), shape (rows, draws)."""

    def col(a: NDArray[np.int64] | F64) -> F64:
        out: F64 = a.astype(np.float64)[:, None]
        return out

    away, hear, see, read, visit = (theta[None, :, k] for k in (AWAY, HEAR, SEE, READ, VISIT))
    miss = (
        (1.0 - hear) ** col(x.plays)
        * (1.0 - x.p_play * hear) ** col(x.plays_unconfirmed)
        * (1.0 - see) ** col(x.screens)
        * (1.0 - x.p_screen * see) ** col(x.screens_unconfirmed)
        * (1.0 - visit) ** col(x.visited)
        * (1.0 - col(x.visit_weight) * visit)
    )
    home = (1.0 - away) * (1.0 - miss)
    q_conf = 1.0 - (1.0 - home) * (1.0 - read)
    q_unc = 1.0 - (1.0 - home) * (1.0 - x.p_phone * read)
    n = x.residents.astype(np.float64)
    n1 = np.minimum(x.phones, x.residents).astype(np.float64)
    n2 = np.minimum(x.phones_unconfirmed, x.residents - n1.astype(np.int64)).astype(np.float64)
    n0 = n - n1 - n2
    return home, q_conf, q_unc, n0[:, None], n1[:, None], n2[:, None]


def moments(x: Exposure, theta: F64) -> tuple[F64, F64]:
    """Mean and variance of the informed residents of each row, for each draw of θ
    (theta: draws × 6); both (rows, draws)."""
    q0, q1, q2, n0, n1, n2 = _direct(x, theta)
    tell = theta[None, :, TELL]
    n = n0 + n1 + n2
    em = n0 * q0 + n1 * q1 + n2 * q2
    vm = n0 * q0 * (1 - q0) + n1 * q1 * (1 - q1) + n2 * q2 * (1 - q2)
    em2 = vm + em * em
    p0 = (1 - q0) ** n0 * (1 - q1) ** n1 * (1 - q2) ** n2
    some = n * (1 - p0) - em  # E[(n − m)·1{m ≥ 1}]
    ex = em + tell * some
    ex2 = (
        em2
        + 2 * tell * (n * em - em2)
        + tell * (1 - tell) * some
        + tell * tell * (n * n * (1 - p0) - 2 * n * em + em2)
    )
    return ex, np.maximum(0.0, ex2 - ex * ex)


def household_pmf(x: Exposure, theta: F64) -> F64:
    """P(X = k), k = 0 … n_max, for each row and draw: (rows, draws, n_max + 1).

    Each resident is direct (q), else told-type (1 − q)·tell, else not: with r = q +
    (1 − q)·tell, the count of direct-or-told is Poisson-binomial in r. X equals it
    when someone is direct; when nobody is, X = 0 — so P(X = k) = PB_r(k) − P0·C(n, k)
    tell^k (1 − tell)^(n − k) for k ≥ 1, and P(X = 0) = P0 = Π (1 − q)."""
    q0, q1, q2, n0, n1, n2 = _direct(x, theta)
    tell = theta[None, :, TELL]
    rows, draws = q0.shape
    n_max = int(x.residents.max()) if rows else 0
    pb = np.zeros((rows, draws, n_max + 1))
    pb[:, :, 0] = 1.0
    for j in range(n_max):  # residents with a confirmed phone first, then unconfirmed
        q = np.where(j < n1, q1, np.where(j < n1 + n2, q2, q0))
        r = (q + (1 - q) * tell)[:, :, None]
        live = (j < (n0 + n1 + n2))[:, :, None]
        new = pb * (1 - r)
        new[:, :, 1:] += pb[:, :, :-1] * r[:, :, :]
        pb = np.where(live, new, pb)
    p0 = (1 - q0) ** n0 * (1 - q1) ** n1 * (1 - q2) ** n2
    n = x.residents.astype(np.int64)
    k = np.arange(n_max + 1)
    comb = np.array([[math.comb(int(m), int(j)) if j <= m else 0 for j in k] for m in n], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        told_only = (
            comb[:, None, :]
            * tell[:, :, None] ** k
            * (1 - tell[:, :, None]) ** (n[:, None, None] - k)
        )
    told_only = np.where(k <= n[:, None, None], told_only, 0.0)
    out = pb - p0[:, :, None] * told_only
    out[:, :, 0] = p0
    return np.maximum(out, 0.0)


def log_likelihood(x: Exposure, informed: I64, theta: F64) -> F64:
    """Log P(the surveyed households' informed counts | θ), per draw.

    As `household_pmf`, evaluated only at each household's own count: the
    Poisson-binomial of r over its three kinds of residents (confirmed phone,
    unconfirmed phone, none) is a sum over how many of each kind — a few terms."""
    if len(informed) == 0:
        return np.zeros(len(theta))
    q0, q1, q2, n0, n1, n2 = _direct(x, theta)
    tell = theta[None, :, TELL]
    r0, r1, r2 = (q + (1 - q) * tell for q in (q0, q1, q2))
    counts = np.concatenate([n0, n1, n2], axis=1).astype(np.int64)
    p0 = (1 - q0) ** n0 * (1 - q1) ** n1 * (1 - q2) ** n2
    total = np.zeros(theta.shape[0])
    keys = np.concatenate([counts, informed[:, None]], axis=1)
    distinct, group = np.unique(keys, axis=0, return_inverse=True)
    group = group.reshape(-1)

    def binom(n: int, k: int, r: F64) -> F64:
        out: F64 = math.comb(n, k) * r**k * (1 - r) ** (n - k)
        return out

    for g, (c0, c1, c2, k) in enumerate(distinct.tolist()):
        rows = np.flatnonzero(group == g)
        n = c0 + c1 + c2
        if k == 0:
            p = p0[rows]
        else:
            pb = np.zeros((len(rows), theta.shape[0]))
            for a in range(min(c1, k) + 1):
                for b in range(min(c2, k - a) + 1):
                    c = k - a - b
                    if c <= c0:
                        pb += (
                            binom(c1, a, r1[rows]) * binom(c2, b, r2[rows]) * binom(c0, c, r0[rows])
                        )
            p = pb - p0[rows] * binom(n, min(k, n), np.broadcast_to(tell, pb.shape))
        total += np.log(np.maximum(p, 1e-300)).sum(axis=0)
    return total


# -- priors --------------------------------------------------------------------------


def _beta_of(mean: float, var: float) -> tuple[float, float]:
    mean = min(max(mean, 1e-4), 1 - 1e-4)
    var = min(max(var, 1e-7), mean * (1 - mean) * 0.99)
    k = mean * (1 - mean) / var - 1
    return mean * k, (1 - mean) * k


def _log_beta_pdf(x: F64, a: F64, b: F64) -> F64:
    """Log density of Beta(a, b) per parameter: x is draws × parameters, a and b one
    value per parameter."""
    x = np.clip(x, 1e-12, 1 - 1e-12)
    lbeta = np.array([math.lgamma(ai) + math.lgamma(bi) - math.lgamma(ai + bi)
                      for ai, bi in zip(a.tolist(), b.tolist(), strict=True)])  # fmt: skip
    out: F64 = (a - 1) * np.log(x) + (b - 1) * np.log1p(-x) - lbeta
    return out


@dataclass(frozen=True)
class BetaPrior:
    """Independent Beta distributions for the six parameters."""

    a: F64
    b: F64

    @classmethod
    def from_ranges(cls, ranges: Mapping[str, tuple[float, float]]) -> BetaPrior:
        """A range [lo, hi] is read as a uniform belief: a Beta with its mean and
        standard deviation (hi − lo)/√12, which, unlike the uniform, lets surveys move
        the estimate outside the range."""
        ab = [_beta_of((lo + hi) / 2, (hi - lo) ** 2 / 12) for lo, hi in
              (ranges[p] for p in PARAMETERS)]  # fmt: skip
        return cls(np.array([a for a, _ in ab]), np.array([b for _, b in ab]))

    @classmethod
    def from_moments(cls, mean: F64, var: F64) -> BetaPrior:
        ab = [_beta_of(float(m), float(v)) for m, v in zip(mean, var, strict=True)]
        return cls(np.array([a for a, _ in ab]), np.array([b for _, b in ab]))

    @property
    def mean(self) -> F64:
        m: F64 = self.a / (self.a + self.b)
        return m

    @property
    def var(self) -> F64:
        s = self.a + self.b
        v: F64 = self.a * self.b / (s * s * (s + 1))
        return v

    def draw(self, rng: np.random.Generator, n: int) -> F64:
        return rng.beta(self.a[None, :], self.b[None, :], (n, len(self.a)))

    def log_pdf(self, theta: F64) -> F64:
        out: F64 = _log_beta_pdf(theta, self.a, self.b).sum(axis=1)
        return out

    def pooled(self, strength: float, posteriors: Sequence[tuple[F64, F64]]) -> BetaPrior:
        """The county's prior for its next alert: this prior (as `strength` alerts'
        worth) mixed with the posteriors (mean, variance) of its surveyed alerts,
        moment-matched per parameter. Alerts differ (weather, hour): the spread of
        their posteriors is kept as spread."""
        if not posteriors:
            return self
        means = np.array([self.mean, *(m for m, _ in posteriors)])
        vars_ = np.array([self.var, *(v for _, v in posteriors)])
        w = np.array([strength, *([1.0] * len(posteriors))])
        w = w / w.sum()
        mean = (w[:, None] * means).sum(0)
        var = (w[:, None] * (vars_ + (means - mean) ** 2)).sum(0)
        return BetaPrior.from_moments(mean, var)


def _systematic(rng: np.random.Generator, weights: F64, n: int) -> I64:
    c = np.cumsum(weights)
    c /= c[-1]
    return np.minimum(np.searchsorted(c, (rng.random() + np.arange(n)) / n), len(weights) - 1)


def posterior(
    prior: BetaPrior,
    surveyed: Exposure,
    informed: I64,
    rng: np.random.Generator,
    *,
    draws: int = 400,
    proposals: int = 1500,
    stages: int = 25,
) -> tuple[F64, float]:
    """θ drawn from the posterior given surveyed households' informed counts, and the
    effective sample size of the last stage.

    Adaptive, tempered importance sampling in logit space: a normal proposal with a
    full covariance (the parameters trade off along ridges — more away and more
    telling explain a survey alike) is refitted stage by stage to prior × likelihood^β,
    β raised from 0 to 1 as fast as a third of the draws keep the weight. A survey far
    from the prior moves the proposal there, so a reality outside the configured
    ranges is still found."""
    if len(informed) == 0:
        return prior.draw(rng, draws), float(draws)
    z = _logit(prior.draw(rng, proposals))
    mu, cov = z.mean(0), np.cov(z, rowvar=False)
    beta, ess = 0.0, 0.0
    theta = _expit(z)
    logw = np.zeros(proposals)
    for _ in range(stages):
        cov = cov + np.eye(len(mu)) * 1e-4
        z = rng.multivariate_normal(mu, cov, proposals)
        theta = _expit(z)
        log_q = _log_normal(z, mu, cov) - np.log(theta * (1 - theta)).sum(1)
        base = prior.log_pdf(theta) - log_q
        ll = log_likelihood(surveyed, informed, theta)

        def ess_at(b: float, base: F64 = base, ll: F64 = ll) -> float:
            lw = base + b * ll
            w = np.exp(lw - lw.max())
            return float(w.sum() ** 2 / (w * w).sum())

        if ess_at(1.0) >= proposals / 3:
            beta = 1.0
        else:
            low, high = beta, 1.0
            for _ in range(30):
                mid = (low + high) / 2
                low, high = (mid, high) if ess_at(mid) >= proposals / 3 else (low, mid)
            beta = max(low, beta)
        logw = base + beta * ll
        ess = ess_at(beta)
        w = np.exp(logw - logw.max())
        w = w / w.sum()
        if beta >= 1.0 and ess >= proposals / 4:
            break
        mu = (w[:, None] * z).sum(0)
        dz = z - mu
        cov = 1.3 * (w[:, None, None] * dz[:, :, None] * dz[:, None, :]).sum(0)
    w = np.exp(logw - logw.max())
    return theta[_systematic(rng, w, draws)], ess


def _logit(x: F64) -> F64:
    x = np.clip(x, 1e-9, 1 - 1e-9)
    out: F64 = np.log(x) - np.log1p(-x)
    return out


def _expit(z: F64) -> F64:
    out: F64 = 1.0 / (1.0 + np.exp(-z))
    return np.clip(out, 1e-9, 1 - 1e-9)


def _log_normal(z: F64, mu: F64, cov: F64) -> F64:
    inv = np.linalg.inv(cov)
    _, logdet = np.linalg.slogdet(cov)
    d = z - mu
    out: F64 = -0.5 * (
        np.einsum("ij,jk,ik->i", d, inv, d) + logdet + len(mu) * math.log(2 * math.pi)
    )
    return out
