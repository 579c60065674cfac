"""Console: the map — the directory's own outlines drawn as SVG (no tiles, no internet).

Units (villages, communities) are drawn from their `polygon` in divisions.yaml, or as a
dot at their `centroid`. The projection is equirectangular around the middle latitude
of what is shown; the `<svg>` carries its parameters (`data-lon0`, `data-lat1`,
`data-k`, `data-cos`) so that the page's script turns a click back into latitude and
longitude (drawing a polygon or a circle for an alert's area).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from markupsafe import Markup, escape

from gateway.directory import Directory

__all__ = ["coverage_colour", "svg_map"]

WIDTH, HEIGHT, PAD = 640, 440, 8


def coverage_colour(coverage: float | None, target: float | None) -> str:
    """Grey (nothing yet), red (well below target), amber (close), green (met)."""
    if coverage is None or target is None:
        return "#d9dde3"
    if coverage >= target:
        return "#2e8540"
    if coverage >= target * 0.8:
        return "#f2a900"
    return "#c8102e"


def _points(directory: Directory, unit: str) -> list[tuple[float, float]]:
    div = directory.divisions[unit]
    if div.polygon:
        return [(lat, lon) for lat, lon in div.polygon]
    if div.centroid:
        return [div.centroid]
    return []


def svg_map(
    directory: Directory,
    units: Iterable[str],
    *,
    fill: Mapping[str, str] | None = None,
    selected: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
    lang: str = "zh",
    css_class: str = "map",
) -> Markup:
    """An SVG of `units`: filled by `fill` (unit → colour), `selected` outlined."""
    shapes = {u: _points(directory, u) for u in units if u in directory.divisions}
    shapes = {u: p for u, p in shapes.items() if p}
    chosen = set(selected)
    if not shapes:
        return Markup('<svg class="{}" viewBox="0 0 {} {}"></svg>').format(css_class, WIDTH, 80)
    lats = [lat for pts in shapes.values() for lat, _ in pts]
    lons = [lon for pts in shapes.values() for _, lon in pts]
    lat0, lat1, lon0, lon1 = min(lats), max(lats), min(lons), max(lons)
    cos = math.cos(math.radians((lat0 + lat1) / 2))
    dx, dy = max((lon1 - lon0) * cos, 1e-6), max(lat1 - lat0, 1e-6)
    k = min((WIDTH - 2 * PAD) / dx, (HEIGHT - 2 * PAD) / dy)
    height = int(dy * k + 2 * PAD)

    def xy(lat: float, lon: float) -> str:
        return f"{PAD + (lon - lon0) * cos * k:.1f},{PAD + (lat1 - lat) * k:.1f}"

    parts = [
        Markup(
            '<svg class="{cls}" viewBox="0 0 {w} {h}" role="img" data-lon0="{lon0}"'
            ' data-lat1="{lat1}" data-k="{k}" data-cos="{cos}" data-pad="{pad}">'
        ).format(cls=css_class, w=WIDTH, h=height, lon0=lon0, lat1=lat1, k=k, cos=cos, pad=PAD)
    ]
    for unit, pts in sorted(shapes.items()):
        div = directory.divisions[unit]
        title = escape(f"{div.label(lang)} {unit}")
        if labels and unit in labels:
            title = escape(f"{div.label(lang)} {unit} — {labels[unit]}")
        colour = (fill or {}).get(unit, "#e8ebef")
        cls = "unit selected" if unit in chosen else "unit"
        if len(pts) == 1:
            parts.append(
                Markup(
                    '<circle class="{}" data-unit="{}" cx="{}" cy="{}" r="5" fill="{}">'
                    "<title>{}</title></circle>"
                ).format(cls, unit, *xy(*pts[0]).split(","), colour, title)
            )
            continue
        d = "M" + " L".join(xy(lat, lon) for lat, lon in pts) + " Z"
        parts.append(
            Markup(
                '<path class="{}" data-unit="{}" d="{}" fill="{}"><title>{}</title></path>'
            ).format(cls, unit, d, colour, title)
        )
    parts.append(Markup('<g class="drawing"></g></svg>'))
    return Markup("").join(parts)
