"""Division codes: every national spelling normalizes in one place."""

from __future__ import annotations

import pytest

from gateway import codes
from gateway.codes import Tier


@pytest.mark.parametrize(
    ("given", "canonical", "tier"),
    [
        ("650000", "650000", Tier.PROVINCE),
        ("650000000000", "650000", Tier.PROVINCE),
        ("652300", "652300", Tier.PREFECTURE),
        ("652300000000", "652300", Tier.PREFECTURE),
        ("652301", "652301", Tier.COUNTY),
        ("130602000000", "130602", Tier.COUNTY),
        ("652301101", "652301101", Tier.TOWNSHIP),
        ("652301101000", "652301101", Tier.TOWNSHIP),
        ("652301101201", "652301101201", Tier.VILLAGE),
        ("652301101201007", "652301101201007", Tier.GRID),
        (" 652301 ", "652301", Tier.COUNTY),
    ],
)
def test_normalize_and_tier(given: str, canonical: str, tier: Tier) -> None:
    assert codes.normalize(given) == canonical
    assert codes.tier(given) is tier


@pytest.mark.parametrize(
    "bad", ["", "65230", "6523011", "65230110120", "abcdef", "000000", "６５２３０１"]
)
def test_non_codes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="division code"):
        codes.normalize(bad)


@pytest.mark.parametrize(
    ("ancestor", "code", "expected"),
    [
        ("652300", "652301", True),
        ("652300", "652301101201", True),
        ("652300000000", "652301101", True),
        ("652301", "652301", True),
        ("652301", "652302101201", False),
        ("652301", "652300", False),  # a child never covers its parent
        ("650000", "652328101201", True),
        ("652301101", "652301101201", True),
        ("652301101", "652301102201", False),
        ("150600", "652301", False),
    ],
)
def test_covers(ancestor: str, code: str, expected: bool) -> None:
    assert codes.covers(ancestor, code) is expected


@pytest.mark.parametrize(
    ("code", "parent"),
    [
        ("652301101201007", "652301101201"),
        ("652301101201", "652301101"),
        ("652301101", "652301"),
        ("652301", "652300"),
        ("652300", "650000"),
        ("650000", None),
    ],
)
def test_parent(code: str, parent: str | None) -> None:
    assert codes.parent(code) == parent
