"""The directory learns households and footprints: loaded, resolved and checked (every
problem named with its file and key), and a directory without households still loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_directory, residents_tolerance
from gateway.errors import ConfigError
from gateway.models import Channel

V1, V2 = "652301001001", "652301001002"
TOKEN = "sha256:" + "0" * 64
DIVISIONS = f"""divisions:
  - {{code: "652301", name: {{zh: 市}}}}
  - {{code: "652301001", name: {{zh: 镇}}}}
  - {{code: "{V1}", name: {{zh: 甲}}, population: 10}}
  - {{code: "{V2}", name: {{zh: 乙}}, population: 4}}
"""
# Village 1: four households of 1, 2, 3, 4 residents along a line of latitude, ~100 m
# apart (0.0009° of latitude ≈ 100 m); village 2: one of 4 residents, no coordinates.
HOUSEHOLDS = f"""id,unit,cell,residents,lat,lon
h1,{V1},{V1}001,1,44.0000,87.0
h2,{V1},{V1}001,2,44.0009,87.0
h3,,{V1}002,3,44.0018,87.0
h4,{V1},{V1}002,4,44.0027,87.0
h5,{V2},,4,,
"""
ENDPOINT_HEADER = (
    "id,kind,unit,languages,covers_population,token_hash,groups,exercise,chars_per_line,"
    "lines,lat,lon,radius_m,footprint\n"
)
RECIPIENTS = f"""id,channel,address,unit,language,groups,persons,exercise,households,household
r1,sms,13900000001,{V1},zh,,2,false,,h2
r2,app,app-1,{V1},zh,,3,false,,h3
r3,sms,13900000003,{V2},zh,,4,false,,
m1,messenger,13900000004,{V1}002,zh,,1,false,20,
"""


def write(tmp: Path, endpoints: str, households: str = HOUSEHOLDS, recipients: str = RECIPIENTS
          ) -> Path:  # fmt: skip
    (tmp / "divisions.yaml").write_text(DIVISIONS, encoding="utf-8")
    (tmp / "endpoints.csv").write_text(ENDPOINT_HEADER + endpoints, encoding="utf-8")
    (tmp / "recipients.csv").write_text(recipients, encoding="utf-8")
    if households:
        (tmp / "households.csv").write_text(households, encoding="utf-8")
    return tmp


GOOD_ENDPOINTS = (
    f"ls-1,loudspeaker,{V1},zh,3,{TOKEN},,false,,,44.0000,87.0,150,\n"  # h1, h2 (100 m)
    f"ls-2,loudspeaker,{V1},zh,7,{TOKEN},,false,,,,,,{V1}002\n"  # a walked cell: h3, h4
    f"ls-3,loudspeaker,{V2},zh,4,{TOKEN},,false,,,,,,h5\n"
)


def problems(tmp: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as exc:
        load_directory(tmp)
    return {f"{i.file}: {i.key}": i.reason for i in exc.value.issues}


def test_households_and_footprints_resolve(tmp_path: Path) -> None:
    d = load_directory(write(tmp_path, GOOD_ENDPOINTS))
    h = d.households
    assert h is not None
    assert h.ids == ["h1", "h2", "h3", "h4", "h5"]
    assert h.units == [V1, V1, V1, V1, V2]  # h3 named only its cell
    assert h.residents_of(V1) == 10
    ids = lambda e: [h.ids[i] for i in d.footprints[e]]  # noqa: E731
    assert ids("ls-1") == ["h1", "h2"]  # 0 m and 100 m within 150 m; h3 at 200 m is not
    assert ids("ls-2") == ["h3", "h4"]
    assert ids("ls-3") == ["h5"]
    sms = d.recipients_of(V1, Channel.SMS)
    app = d.recipients_of(V1, Channel.APP)
    msg = d.recipients_of(V1, Channel.MESSENGER)
    assert sms is not None
    assert app is not None
    assert msg is not None
    assert [h.ids[i] for i in sms.household] == ["h2"]
    assert [h.ids[i] for i in app.household] == ["h3"]
    assert msg.household == [-1]
    assert msg.cells == [f"{V1}002"]  # registered in its grid cell
    assert d.has_households(V1)


def test_a_directory_without_households_still_loads(tmp_path: Path) -> None:
    endpoints = f"ls-1,loudspeaker,{V1},zh,3,{TOKEN},,false,,,,,,\n"
    recipients = RECIPIENTS.replace(",h2\n", ",\n").replace(",h3\n", ",\n")
    d = load_directory(write(tmp_path, endpoints, households="", recipients=recipients))
    assert d.households is None
    assert d.footprints == {}
    assert not d.has_households(V1)


def test_every_household_problem_is_named(tmp_path: Path) -> None:
    households = (
        HOUSEHOLDS
        + f"h1,{V1},,1,,\n"  # duplicate id
        + f"h6,{V1},{V2}001,1,,\n"  # a cell of another village
        + "h7,652301001,,1,,\n"  # a township, not a village
        + f"h8,{V1},,0,,\n"  # nobody lives there
        + f"h9,{V1},,1,44.0,\n"  # lat without lon
        + f"bad id,{V1},,1,,\n"
    )
    endpoints = GOOD_ENDPOINTS + (
        f"ls-4,loudspeaker,{V1},zh,1,{TOKEN},,false,,,,,,h404 {V1}009\n"  # dangling
        f"ls-5,loudspeaker,{V1},zh,1,{TOKEN},,false,,,,,,h5\n"  # outside its unit
        f"ls-6,loudspeaker,{V1},zh,1,{TOKEN},,false,,,,,,\n"  # no footprint at all
        f"ls-7,loudspeaker,{V1},zh,1,{TOKEN},,false,,,,,120,\n"  # a radius, no position
    )
    recipients = RECIPIENTS + (
        f"r5,sms,13900000005,{V1},zh,,1,false,,h404\n"  # dangling household
        f"r6,sms,13900000006,{V1},zh,,1,false,,h5\n"  # a household of another unit
    )
    found = problems(write(tmp_path, endpoints, households, recipients))
    expected = {
        "households.csv: line 7.id": "duplicate household id h1",
        "households.csv: line 8.cell": f"{V2}001 is not a grid cell of {V1}",
        "households.csv: line 9.unit": "'652301001' is not a village/community",
        "households.csv: line 10.residents": "residents must be from 1 to 1000",
        "households.csv: line 11.lat": "lat and lon go together, in degrees",
        "households.csv: line 12.id": "missing or malformed household id",
        "endpoints.csv: endpoint ls-5.footprint": (
            f"reaches households of {V2}, outside its unit {V1}"
        ),
        "endpoints.csv: endpoint ls-6.footprint": (
            "its unit has households: give a position and radius_m, or a footprint"
        ),
        "recipients.csv: line 6.household": "unknown household 'h404'",
        "recipients.csv: line 7.household": f"household h5 lives in {V2}, not in {V1}",
    }
    for key, reason in expected.items():
        assert found.get(key) == reason, (key, found)
    assert found["endpoints.csv: line 8"] == "Value error, a radius needs a position (lat, lon)"
    assert found["endpoints.csv: endpoint ls-4.footprint"] == (
        f"names no household or grid cell: 'h404', '{V1}009'"
    )


def test_residents_must_add_up_within_the_stated_tolerance(tmp_path: Path) -> None:
    assert residents_tolerance(10) == 3  # 1 % of 10 is less than the 3-person slack
    assert residents_tolerance(5000) == 50
    # Village 1 has population 10: households of 1+2+3+4 = 10. One more resident in h4
    # is within the slack of 3; five more are not.
    within = HOUSEHOLDS.replace("h4,652301001001,652301001001002,4", f"h4,{V1},{V1}002,7")
    assert load_directory(write(tmp_path, GOOD_ENDPOINTS, within)).households is not None
    beyond = HOUSEHOLDS.replace("h4,652301001001,652301001001002,4", f"h4,{V1},{V1}002,9")
    found = problems(write(tmp_path, GOOD_ENDPOINTS, beyond))
    assert found[f"households.csv: unit {V1}"] == (
        "residents add up to 15, the unit's population is 10 (tolerance 3: 1% or 3 persons)"
    )
