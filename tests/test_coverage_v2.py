"""Coverage definition v2 on cases computed by hand (the worked example of
docs/coverage.md), the person-level model against its own closed forms and against the
world it describes, and the survey posterior."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gateway.codes import Tier
from gateway.coverage.delivery import Prepared, first_minute, targets
from gateway.coverage.informed import (
    BetaPrior,
    Exposure,
    household_pmf,
    log_likelihood,
    moments,
    posterior,
)
from gateway.coverage.reach import ChannelReach, Reach, parse_log, record_line
from gateway.coverage.v2 import measure, rng_for
from gateway.directory import (
    Directory,
    Display,
    Division,
    Endpoint,
    EndpointKind,
    Households,
    RecipientColumns,
)
from gateway.models import Channel

A, B = "652301001001", "652301001002"
INF = math.inf
TOKEN = "sha256:" + "0" * 64


def example() -> Directory:
    """Unit A: households a1 (2 residents), a2 (3), a3 (1), a4 (4); loudspeakers ls-1
    reaching a1, a2 and ls-2 reaching a2, a3 (they overlap in a2); phones: r1 of a4,
    r2 of a1 (SMS). Unit B: household b1 (4) under screen ds-1; messenger m1."""
    divs = [
        Division(code="652301", tier=Tier.COUNTY, name={"zh": "市"}),
        Division(code="652301001", tier=Tier.TOWNSHIP, name={"zh": "镇"}),
        Division(code=A, tier=Tier.VILLAGE, name={"zh": "A"}, population=10),
        Division(code=B, tier=Tier.VILLAGE, name={"zh": "B"}, population=4),
    ]
    homes = Households(
        ["a1", "a2", "a3", "a4", "b1"], [A, A, A, A, B], ["", "", "", "", ""],
        np.array([2, 3, 1, 4, 4], np.int32), np.full(5, np.nan), np.full(5, np.nan),
    )  # fmt: skip
    eps = [
        Endpoint(id="ls-1", kind=EndpointKind.LOUDSPEAKER, unit=A, languages=["zh"],
                 covers_population=5, token_hash=TOKEN, footprint=["a1", "a2"]),
        Endpoint(id="ls-2", kind=EndpointKind.LOUDSPEAKER, unit=A, languages=["zh"],
                 covers_population=4, token_hash=TOKEN, footprint=["a2", "a3"]),
        Endpoint(id="ds-1", kind=EndpointKind.DISPLAY, unit=B, languages=["zh"],
                 covers_population=4, token_hash=TOKEN, footprint=["b1"],
                 display=Display(chars_per_line=16, lines=4)),
    ]  # fmt: skip
    sms = RecipientColumns()
    sms.append("r1", "13900000001", "zh", 4, "", False, 0, household=3)
    sms.append("r2", "13900000002", "zh", 2, "schools", False, 0, household=0)
    msg = RecipientColumns()
    msg.append("m1", "13900000003", "zh", 1, "", False, 10)
    recipients = {(A, Channel.SMS): sms, (B, Channel.MESSENGER): msg}
    return Directory(divs, eps, recipients, households=homes)


def log(channel: str, *lines: tuple[int, str, str, str, str]) -> ChannelReach:
    return parse_log(channel, [record_line(*line) for line in lines])


def example_reach() -> Reach:
    """ls-1 played in minute 2, ls-2 in minute 5; r2 delivered in minute 1; r1 sent in
    minute 0, its receipt never came; ds-1 displayed in minute 3; m1 named b1 in 20."""
    return Reach(
        {
            "loudspeaker": log(
                "loudspeaker",
                (0, "sent", A, "ls-1", ""), (2, "played", A, "ls-1", ""),
                (0, "sent", A, "ls-2", ""), (5, "played", A, "ls-2", ""),
            ),
            "sms": log(
                "sms",
                (0, "sent", A, "r1", "gw"), (0, "sent", A, "r2", "gw"),
                (1, "delivered", A, "r2", ""),
            ),
            "display": log("display", (3, "displayed", B, "ds-1", "")),
            "messenger": log("messenger", (20, "households", B, "m1", "b1")),
        }
    )  # fmt: skip


def test_delivery_is_a_union_over_households() -> None:
    d = example()
    prep = Prepared(d, targets(d, [A, B]), example_reach())
    by = lambda minute: prep.at(minute)  # noqa: E731
    # By minute 3: a1 (r2 in minute 1, ls-1 in 2) and a2 (ls-1): 5 of A's 10 residents.
    assert by(3).delivered.tolist() == [0.5, 0.0]
    # By minute 6: ls-2 adds a3 only (a2 is already covered): 6 of 10, not v1's
    # min(1, (5 + 4) / 10) = 0.9 from summing the two loudspeakers.
    assert by(6).delivered.tolist() == [0.6, 1.0]
    # a4's SMS was sent and never confirmed; SMS had 1 delivered and 0 failed receipts:
    # P(delivered | no receipt) = (1 + 1) / (1 + 0 + 2) = 2/3, so 4 × 2/3 more residents.
    got = by(6)
    assert got.p["sms"] == pytest.approx(2 / 3)
    assert got.delivered_estimate[0] == pytest.approx((6 + 4 * 2 / 3) / 10)
    assert got.delivered_estimate[1] == 1.0
    # B: the screen covers b1 from minute 3; the messenger's visit adds nobody new.
    assert by(4).delivered.tolist()[1] == 1.0
    assert by(None).delivered.tolist() == [0.6, 1.0]


def test_exposure_counts_plays_phones_and_visits() -> None:
    d = example()
    x = Prepared(d, targets(d, [A, B]), example_reach()).at(None).exposure
    assert x.residents.tolist() == [2, 3, 1, 4, 4]
    assert x.plays.tolist() == [1, 2, 1, 0, 0]  # a2 hears both loudspeakers
    assert x.phones.tolist() == [1, 0, 0, 0, 0]
    assert x.phones_unconfirmed.tolist() == [0, 0, 0, 1, 0]
    assert x.screens.tolist() == [0, 0, 0, 0, 1]
    assert x.visited.tolist() == [0, 0, 0, 0, 1]


def test_repeat_plays_count_in_c_not_twice_in_d() -> None:
    d = example()
    reach = example_reach()
    reach.channels["loudspeaker"] = log(
        "loudspeaker", (0, "sent", A, "ls-1", ""), (2, "played", A, "ls-1", ""),
        (7, "played+1", A, "ls-1", ""), (8, "played+1", A, "ls-1", ""),  # a repeated receipt
    )  # fmt: skip
    prep = Prepared(d, targets(d, [A]), reach)
    assert prep.at(6).exposure.plays.tolist() == [1, 1, 0, 0]
    assert prep.at(9).exposure.plays.tolist() == [2, 2, 0, 0]  # the repeat, once
    assert prep.at(9).delivered.tolist() == [0.5]  # a1, a2: covered once


def test_group_alert_is_measured_against_the_group() -> None:
    d = example()
    t = targets(d, [A], ["schools"])
    assert t.households.tolist() == [0]  # r2 of the schools group lives in a1
    assert t.population.tolist() == [2]
    prep = Prepared(d, t, example_reach())
    assert prep.at(None).delivered.tolist() == [1.0]  # not 2 / 10 of the whole village


def test_time_to_target_is_the_first_minute_the_share_reached() -> None:
    d = example()
    prep = Prepared(d, targets(d, [A, B]), example_reach())
    first = prep.first_covered()
    assert first.tolist() == [1, 2, 5, INF, 3]
    t = prep.targets
    res = t.residents.astype(float)
    pop = t.population.astype(float)
    # A reaches 50 % by minute 3 (a1 in minute 1, a2 in 2) and 60 % by minute 6.
    assert first_minute(first, res, t.unit_of, pop, 0.5).tolist() == [3, 4]
    assert first_minute(first, res, t.unit_of, pop, 0.6).tolist() == [6, 4]
    assert first_minute(first, res, t.unit_of, pop, 0.9).tolist() == [INF, 4]


def test_log_lines_of_one_delivery_in_any_order() -> None:
    r = parse_log(
        "sms",
        [
            record_line(3, "delivered", "", "r1"),  # the receipt overtook the sender
            record_line(2, "sent", A, "r1", "gw-a"),
            record_line(1, "sent", A, "r1", "gw-a"),
            "garbage\n",
            "x|sent|A|r2|\n",
            record_line(4, "failed", A, "r2", "UNDELIV"),
        ],
    )
    assert r.ids == ["r1", "r2"]
    assert r.units == [A, A]
    assert r.sent.tolist() == [1, INF]
    assert r.confirmed.tolist() == [3, INF]
    assert r.failed.tolist() == [INF, 4]
    assert r.provider == ["gw-a", ""]


# -- the person-level model -------------------------------------------------------------


def one(residents: int, plays: int = 0, phones: int = 0, unconfirmed: int = 0,
        p_phone: float = 1.0) -> Exposure:  # fmt: skip
    i = lambda v: np.array([v], np.int64)  # noqa: E731
    return Exposure(i(residents), i(plays), i(0), i(0), i(0), i(0), np.zeros(1), i(phones),
                    i(unconfirmed), p_phone=p_phone)  # fmt: skip


def theta(away: float = 0.0, hear: float = 0.5, see: float = 0.0, read: float = 1.0,
          tell: float = 0.0, visit: float = 1.0) -> np.ndarray:  # fmt: skip
    return np.array([[away, hear, see, read, tell, visit]])


def test_moments_by_hand() -> None:
    # Three residents, two plays heard with 0.5 each: q = 1 − 0.5² = 0.75 per resident.
    ex, var = moments(one(3, plays=2), theta())
    assert ex[0, 0] == pytest.approx(2.25)
    assert var[0, 0] == pytest.approx(3 * 0.75 * 0.25)
    # Everyone tells everyone: all three know unless nobody heard (0.25³).
    ex, var = moments(one(3, plays=2), theta(tell=1.0))
    p_some = 1 - 0.25**3
    assert ex[0, 0] == pytest.approx(3 * p_some)
    assert var[0, 0] == pytest.approx(9 * p_some - (3 * p_some) ** 2)
    # A phone read for sure: its owner knows; half away, the two others hear nothing.
    ex, _ = moments(one(3, phones=1), theta(away=0.5, hear=1.0))
    assert ex[0, 0] == pytest.approx(1.0)
    # An unconfirmed phone counts at its p.
    ex, _ = moments(one(1, unconfirmed=1, p_phone=0.8), theta(read=0.5))
    assert ex[0, 0] == pytest.approx(0.4)


@pytest.mark.parametrize("th", [theta(), theta(tell=0.7, away=0.3), theta(0.2, 0.6, 0, 0.9, 0.5)])
def test_pmf_and_moments_agree(th: np.ndarray) -> None:
    x = Exposure(
        np.array([1, 3, 5, 4]), np.array([0, 2, 1, 3]), np.array([1, 0, 0, 1]),
        np.array([0, 0, 1, 0]), np.zeros(4, np.int64), np.array([0, 1, 0, 0]),
        np.array([0, 0, 0.5, 0]), np.array([1, 0, 2, 1]), np.array([0, 1, 0, 1]),
        0.9, 0.8, 0.7,
    )  # fmt: skip
    pmf = household_pmf(x, th)
    ex, var = moments(x, th)
    k = np.arange(pmf.shape[2])
    assert pmf.sum(axis=2) == pytest.approx(np.ones((4, 1)))
    mean = (pmf * k).sum(axis=2)
    assert mean == pytest.approx(ex)
    assert (pmf * k**2).sum(axis=2) - mean**2 == pytest.approx(var)
    # The survey likelihood is the same distribution, read at each household's count.
    for counts in ([0, 1, 2, 3], [1, 3, 5, 4], [1, 0, 0, 1]):
        observed = np.array(counts)
        expected = np.log(np.maximum(pmf[np.arange(4), 0, observed], 1e-300)).sum()
        assert log_likelihood(x, observed, th)[0] == pytest.approx(expected)


def test_posterior_finds_a_reality_outside_the_prior() -> None:
    """300 households surveyed where people hear far less than the county expects:
    the posterior's expected informed share must come within 3 points of the truth's,
    though the prior's is more than 10 points off (the bounds set before running)."""
    rng = np.random.default_rng(5)
    n = 300
    x = Exposure(
        rng.integers(1, 6, n), rng.integers(0, 3, n), np.zeros(n, np.int64),
        np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n),
        rng.integers(0, 2, n), np.zeros(n, np.int64),
    )  # fmt: skip
    truth = np.array([[0.45, 0.3, 0.3, 0.9, 0.3, 0.9]])
    pmf = household_pmf(x, truth)[:, 0, :]
    informed = np.array([rng.choice(pmf.shape[1], p=p / p.sum()) for p in pmf])
    prior = BetaPrior.from_ranges({"away": (0.05, 0.25), "hear": (0.6, 0.95),
                                   "see": (0.2, 0.5), "read": (0.8, 0.98),
                                   "tell": (0.5, 0.9), "visit": (0.85, 1.0)})  # fmt: skip
    share = lambda th: moments(x, th)[0].sum(0).mean() / x.residents.sum()  # noqa: E731
    true_share = share(truth)
    assert abs(share(prior.draw(rng, 400)) - true_share) > 0.10
    post, ess = posterior(prior, x, informed, rng)
    assert abs(share(post) - true_share) < 0.03
    assert ess > 50


def test_measure_gives_a_median_inside_its_interval_and_rolls_up() -> None:
    d = example()
    prep = Prepared(d, targets(d, [A, B]), example_reach())
    prior = BetaPrior.from_ranges({"away": (0.05, 0.25), "hear": (0.6, 0.95),
                                   "see": (0.2, 0.5), "read": (0.8, 0.98),
                                   "tell": (0.5, 0.9), "visit": (0.85, 1.0)})  # fmt: skip
    th = {"652301": prior.draw(rng_for("a", "theta"), 400)}
    v = measure(d, prep, th, minutes=None, targets={}, rng=rng_for("a", "noise"))
    assert v.population == 14
    assert v.delivered == pytest.approx((6 + 4) / 14)
    for u in v.units:
        assert 0 <= u.informed_low <= u.informed <= u.informed_high <= 1
        assert u.informed_high <= u.delivered_estimate + 1e-9 or u.unit == A
    [town] = v.rollup(d, Tier.TOWNSHIP)
    assert town["population"] == 14
    assert town["delivered"] == pytest.approx(10 / 14, abs=1e-4)
    low, high = town["informed_interval"]
    assert low <= town["informed"] <= high
    # The same alert gives the same figures on every read.
    again = measure(d, prep, th, minutes=None, targets={}, rng=rng_for("a", "noise"))
    assert again.informed == v.informed
