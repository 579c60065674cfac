"""Directory: administrative division codes, normalized in this one place.

Chinese division codes (GB/T 2260 for counties and above, the statistical codes below)
are 12 digits when written in full: PP CC DD TTT VVV (province, prefecture, county,
township, village). They are written shorter when the tail is zero: 6 digits for a
county (or a prefecture/province, zero-padded), 9 for a township, 12 for a village. The
national CAP feeds write every area as 12 digits with zero padding, so `130602000000`
is the whole county `130602`. warngate also has a grid tier below the village (15
digits: the village code and a 3-digit grid number).

Canonical form (what is stored and shown): 6 digits for province, prefecture and
county, 9 for a township, 12 for a village, 15 for a grid. `significant()` gives the
prefix that every descendant starts with, so `covers()` is a string prefix test.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Tier", "covers", "is_division_code", "normalize", "parent", "significant", "tier"]


class Tier(IntEnum):
    """Tiers from the top; the number is the length of the significant prefix."""

    PROVINCE = 2
    PREFECTURE = 4
    COUNTY = 6
    TOWNSHIP = 9
    VILLAGE = 12
    GRID = 15


_LENGTHS = {6, 9, 12, 15}


def is_division_code(value: str) -> bool:
    return value.isascii() and value.isdigit() and len(value) in _LENGTHS and value[:2] != "00"


def _padded(code: str) -> str:
    code = code.strip()
    if not is_division_code(code):
        raise ValueError(f"not a division code: {code!r} (expected 6, 9, 12 or 15 digits)")
    return code.ljust(12, "0") if len(code) < 12 else code


def tier(code: str) -> Tier:
    full = _padded(code)
    if len(full) == 15:
        return Tier.GRID
    if full[2:] == "0" * 10:
        return Tier.PROVINCE
    if full[4:] == "0" * 8:
        return Tier.PREFECTURE
    if full[6:] == "0" * 6:
        return Tier.COUNTY
    if full[9:] == "000":
        return Tier.TOWNSHIP
    return Tier.VILLAGE


def significant(code: str) -> str:
    """The prefix shared by the division and all its descendants."""
    return _padded(code)[: int(tier(code))]


def normalize(code: str) -> str:
    """Canonical form of any accepted spelling; raises ValueError on anything else."""
    code = code.strip()
    full = _padded(code)
    t = tier(code)
    if t <= Tier.COUNTY:
        return full[:6]
    return full[: int(t)]


def covers(ancestor: str, code: str) -> bool:
    """True when `code` is `ancestor` or lies under it (both in any accepted form)."""
    return significant(code).startswith(significant(ancestor))


def parent(code: str) -> str | None:
    """The canonical code of the next tier up, or None for a province."""
    t = tier(code)
    sig = significant(code)
    ups = [x for x in Tier if x < t]
    if not ups:
        return None
    return normalize(sig[: int(ups[-1])].ljust(6, "0"))
