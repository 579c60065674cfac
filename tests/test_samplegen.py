"""The sample-directory generator: deterministic, loadable, realistic, and what config/ holds."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from shapely import STRtree, contains_xy
from shapely.geometry import Point, Polygon

from gateway import samplegen
from gateway.codes import Tier
from gateway.config import check_phone, load_directory
from gateway.directory import Channel, Directory

CONFIG = Path(__file__).resolve().parents[1] / "config"
FILES = ("divisions.yaml", "groups.yaml", "households.csv", "endpoints.csv", "recipients.csv")
AREA_LANGUAGES = {"652300": {"zh", "ug", "kk", "en"}, "150600": {"zh", "mn", "en"}}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, samplegen.Summary]:
    out = tmp_path_factory.mktemp("sample")
    # Names as committed: the translators edit them in config/ (a regeneration keeps them).
    return out, samplegen.generate(out, names_from=CONFIG)


@pytest.fixture(scope="module")
def directory(sample: tuple[Path, samplegen.Summary]) -> Directory:
    return load_directory(sample[0])


def _bytes(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in FILES}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_same_seed_gives_identical_bytes(sample: tuple[Path, samplegen.Summary], tmp_path: Path):
    again = samplegen.generate(tmp_path / "again", names_from=CONFIG)
    assert _bytes(tmp_path / "again") == _bytes(sample[0])
    assert again == sample[1]


def test_another_seed_gives_another_directory(
    sample: tuple[Path, samplegen.Summary], tmp_path: Path
):
    samplegen.generate(tmp_path / "other", seed=7)
    base, other = _bytes(sample[0]), _bytes(tmp_path / "other")
    for name in ("divisions.yaml", "endpoints.csv", "recipients.csv"):
        assert other[name] != base[name], name


def test_committed_sample_is_the_generator_output(sample: tuple[Path, samplegen.Summary]):
    generated = _bytes(sample[0])
    for name in FILES:
        committed = CONFIG / name
        assert committed.exists(), f"config/{name} is missing"
        assert committed.read_bytes() == generated[name], (
            f"config/{name} differs from the generator: run `python -m gateway.samplegen config`"
        )


def test_sample_loads_with_the_expected_counts(
    sample: tuple[Path, samplegen.Summary], directory: Directory
):
    summary = sample[1]
    assert 150 <= len(directory.units) == summary.villages
    tiers = Counter(d.tier.name.lower() for d in directory.divisions.values())
    assert dict(tiers) == summary.divisions_by_tier
    assert summary.divisions_by_tier["prefecture"] == 2
    assert summary.divisions_by_tier["county"] == 3
    kinds = Counter(directory.divisions[u].kind for u in directory.units)
    assert dict(kinds) == summary.units_by_kind
    assert set(kinds) == {"community", "village"}
    assert sum(directory.divisions[u].population for u in directory.units) == summary.population
    for county, population in summary.population_by_county.items():
        assert directory.population(county) == population
    assert Counter(e.kind.value for e in directory.endpoints.values()) == Counter(
        summary.endpoints_by_kind
    )
    by_channel: Counter[str] = Counter()
    for (_, channel), cols in directory.recipients.items():
        by_channel[channel.value] += len(cols)
    assert by_channel == Counter(summary.recipients_by_channel)
    assert summary.endpoints == samplegen.DEFAULT_ENDPOINTS
    assert summary.recipients == samplegen.DEFAULT_RECIPIENTS


def test_sample_areas_are_the_real_counties_at_realistic_size(
    sample: tuple[Path, samplegen.Summary], directory: Directory
):
    by_county = sample[1].population_by_county
    assert 300_000 <= by_county["652301"] <= 400_000  # Changji City
    assert 70_000 <= by_county["652328"] <= 100_000  # Mori
    assert 100_000 <= by_county["150603"] <= 150_000  # Kangbashi
    for code in directory.units:
        div = directory.divisions[code]
        low, high = (2_000, 12_000) if div.kind == "community" else (300, 3_000)
        assert low <= div.population <= high, code
    centres = {"652301": (44.01, 87.30), "652328": (43.83, 90.28), "150603": (39.61, 109.78)}
    for county, (lat, lon) in centres.items():
        for code in directory.units_under(county):
            c_lat, c_lon = directory.divisions[code].centroid or (0.0, 0.0)
            assert abs(c_lat - lat) < 1.0, code
            assert abs(c_lon - lon) < 1.5, code


def test_divisions_are_named_in_the_languages_of_their_area(directory: Directory):
    for div in directory.divisions.values():
        prefecture = div.code[:4] + "00"
        assert AREA_LANGUAGES[prefecture] <= set(div.name), div.code
        assert set(div.languages) <= AREA_LANGUAGES[prefecture] - {"en"}, div.code
        if "mn" in div.name:
            letters = [ch for ch in div.name["mn"] if ch.isalpha()]
            assert letters, div.code
            assert all("\u1800" <= ch <= "\u18af" for ch in letters), div.code
    names = [tuple(sorted(directory.divisions[u].name.items())) for u in directory.units]
    for county in ("652301", "652328", "150603"):
        zh = [directory.divisions[u].name["zh"] for u in directory.units_under(county)]
        assert len(zh) == len(set(zh)), f"village names repeat in {county}"
    assert len(set(names)) > 0.8 * len(names)


def test_units_have_valid_disjoint_outlines_around_their_centroid(directory: Directory):
    geoms = [directory.unit_geometry(u) for u in directory.units]
    for code, geom in zip(directory.units, geoms, strict=True):
        div = directory.divisions[code]
        assert div.polygon is not None
        assert div.centroid is not None
        assert geom is not None, code
        assert geom.is_valid, code
        assert geom.area > 0, code
        assert geom.contains(Point(div.centroid[1], div.centroid[0])), code
    tree = STRtree(geoms)
    for i, geom in enumerate(geoms):
        hits = [int(j) for j in tree.query(geom, predicate="intersects") if int(j) != i]
        assert not hits, (directory.units[i], [directory.units[j] for j in hits])


def test_endpoints_are_realistic(sample: tuple[Path, samplegen.Summary], directory: Directory):
    covered: Counter[str] = Counter()
    speakers: Counter[str] = Counter()
    households = directory.households
    assert households is not None
    union = {u: np.zeros(len(households), bool) for u in directory.units}
    for ep in directory.endpoints.values():
        unit = directory.divisions[ep.unit]
        assert unit.tier is Tier.VILLAGE
        assert ep.languages == list(unit.languages[: len(ep.languages)])
        digest = hashlib.sha256(samplegen.device_token(ep.id).encode()).hexdigest()
        assert ep.token_hash == f"sha256:{digest}"
        footprint = directory.footprints[ep.id]
        # v1's figure for the device is the residents of its footprint.
        assert ep.covers_population == int(households.residents[footprint].sum()), ep.id
        assert ep.lat is not None
        assert ep.radius_m is not None
        if ep.kind == "loudspeaker":
            assert ep.id.startswith(f"ls-{ep.unit}-")
            assert ep.display is None
            assert 150 <= ep.radius_m <= 400
            covered[ep.unit] += ep.covers_population
            speakers[ep.unit] += 1
            union[ep.unit][footprint] = True
        else:
            assert ep.id.startswith(f"ds-{ep.unit}-")
            assert ep.display is not None
            assert 12 <= ep.display.chars_per_line <= 24
            assert 2 <= ep.display.lines <= 6
            assert 30 <= ep.radius_m <= 80
    walked = [ep for ep in directory.endpoints.values() if ep.footprint]
    assert 0.03 * len(directory.endpoints) < len(walked) < 0.2 * len(directory.endpoints)
    assert all(len(c) == 15 for ep in walked for c in ep.footprint)  # grid cells
    with_speaker = [u for u in directory.units if speakers[u]]
    assert 0.9 * len(directory.units) <= len(with_speaker) < len(directory.units)
    assert max(speakers.values()) <= 4
    heard = {u: int(households.residents[union[u]].sum()) for u in with_speaker}
    shares = sorted(heard[u] / directory.divisions[u].population for u in with_speaker)
    assert 0.4 <= shares[len(shares) // 2] <= 0.95
    # Loudspeakers of a unit overlap somewhere (what definition v1 summed before its cap).
    overlapping = [u for u in with_speaker if covered[u] > heard[u]]
    assert len(overlapping) > 0.1 * len(with_speaker)
    exercise = sum(ep.exercise for ep in directory.endpoints.values())
    assert 0 < exercise < 0.08 * len(directory.endpoints)


def test_recipients_are_realistic(sample: tuple[Path, samplegen.Summary], directory: Directory):
    rows = _rows(sample[0] / "recipients.csv")
    assert [r["id"] for r in rows] == [f"r{i:07d}" for i in range(1, len(rows) + 1)]
    phones = [r["address"] for r in rows if r["channel"] in ("sms", "messenger")]
    assert all(check_phone(p) for p in phones)
    assert len(set(phones)) == len(phones)
    apps = [r["address"] for r in rows if r["channel"] == "app"]
    assert all(a.startswith("app-") for a in apps)
    assert len(set(apps)) == len(apps)
    channels = Counter(r["channel"] for r in rows)
    assert 0.70 <= channels["sms"] / len(rows) <= 0.88
    assert 0.10 <= channels["app"] / len(rows) <= 0.22
    for code in directory.units:
        messengers = directory.recipients_of(code, Channel.MESSENGER)
        assert messengers is not None, code
        assert 1 <= len(messengers) <= 3, code
        assert all(20 <= h <= 200 for h in messengers.households)
        sms = directory.recipients_of(code, Channel.SMS)
        assert sms is not None
        cadres = sum("village_officials" in g.split() for g in sms.groups)
        assert 2 <= cadres <= 4, code
        langs = directory.divisions[code].languages
        for channel in (Channel.SMS, Channel.APP):
            cols = directory.recipients_of(code, channel)
            if cols is not None:
                assert set(cols.languages) <= set(langs), code
                assert all(1 <= p <= 5 for p in cols.persons)
                # Each phone belongs to a household of its unit; it stands for its residents.
                assert directory.households is not None
                for home, persons in zip(cols.household, cols.persons, strict=True):
                    assert directory.households.units[home] == code
                    assert directory.households.residents[home] == persons
        assert all(c.startswith(code) and len(c) == 15 for c in messengers.cells), code
    persons = [int(r["persons"]) for r in rows if r["channel"] != "messenger"]
    assert 2.5 <= sum(persons) / len(persons) <= 3.1
    herders = Counter(r["unit"][:6] for r in rows if "herders" in r["groups"].split())
    assert herders["652328"] > herders["652301"]  # Mori is the pastoral county


def test_households_add_up_and_live_inside_their_unit(directory: Directory):
    households = directory.households
    assert households is not None
    for code in directory.units:
        div = directory.divisions[code]
        members = households.by_unit[code]
        assert int(households.residents[members].sum()) == div.population, code
        assert all(1 <= n <= 5 for n in households.residents[members].tolist())
        cells = {households.cells[i] for i in members.tolist()}
        assert all(c[:12] == code and len(c) == 15 for c in cells), code
        assert 0.4 * len(members) / 150 <= len(cells) <= 2.5 * len(members) / 150 + 1, code
        assert div.polygon is not None
        outline = Polygon([(lon, lat) for lat, lon in div.polygon]).buffer(1e-4)
        inside = contains_xy(outline, households.lon[members], households.lat[members])
        assert inside.all(), code
    mean = households.residents.sum() / len(households)
    assert 2.6 <= mean <= 3.0  # 1–5 residents, mean 2.82


def test_regeneration_keeps_translated_names(tmp_path: Path):
    samplegen.generate(tmp_path, recipients=100, endpoints=20)
    before = _bytes(tmp_path)
    divisions = (tmp_path / "divisions.yaml").read_text(encoding="utf-8")
    groups = (tmp_path / "groups.yaml").read_text(encoding="utf-8")
    assert "en: Changji City}" in divisions
    assert "en: schools}" in groups
    (tmp_path / "divisions.yaml").write_text(
        divisions.replace("en: Changji City}", "en: Changji}"), encoding="utf-8"
    )
    (tmp_path / "groups.yaml").write_text(
        groups.replace("en: schools}", "en: schools and kindergartens}"), encoding="utf-8"
    )
    samplegen.generate(tmp_path, recipients=100, endpoints=20)
    after = _bytes(tmp_path)
    assert "en: Changji}" in after["divisions.yaml"].decode()
    assert "en: schools and kindergartens}" in after["groups.yaml"].decode()
    for name in ("households.csv", "endpoints.csv", "recipients.csv"):
        assert after[name] == before[name], name


def test_scaled_directory_has_exactly_the_requested_rows(
    sample: tuple[Path, samplegen.Summary], tmp_path: Path
):
    summary = samplegen.generate(tmp_path, recipients=50_000, endpoints=2_000)
    assert summary.recipients == 50_000
    assert summary.endpoints == 2_000
    assert len(_rows(tmp_path / "recipients.csv")) == 50_000
    assert len(_rows(tmp_path / "endpoints.csv")) == 2_000
    # The division tree does not depend on the row counts (only the header line does).
    scaled = (tmp_path / "divisions.yaml").read_text(encoding="utf-8").split("\n", 1)[1]
    base = (sample[0] / "divisions.yaml").read_text(encoding="utf-8").split("\n", 1)[1]
    assert scaled == base
    directory = load_directory(tmp_path)
    assert directory.recipient_count() == 50_000
    assert len(directory.endpoints) == 2_000


def test_tiny_directory_still_loads(tmp_path: Path):
    summary = samplegen.generate(tmp_path, recipients=25, endpoints=3)
    assert (summary.recipients, summary.endpoints) == (25, 3)
    directory = load_directory(tmp_path)
    assert directory.recipient_count() == 25
    assert len(directory.endpoints) == 3


def test_main_regenerates_and_prints_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    out = tmp_path / "cfg"
    argv = [str(out), "--recipients", "300", "--endpoints", "40", "--seed", "3"]
    assert samplegen.main(argv) == 0
    printed = capsys.readouterr().out
    assert "recipients  300" in printed
    assert "endpoints   40" in printed
    header = (out / "divisions.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert "--recipients 300 --endpoints 40 --seed 3" in header
    assert len(_rows(out / "recipients.csv")) == 300


def test_bad_arguments_are_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="recipients"):
        samplegen.generate(tmp_path, recipients=-1)
    with pytest.raises(ValueError, match="endpoints"):
        samplegen.generate(tmp_path, endpoints=-5)
