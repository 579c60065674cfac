"""The CAP codec on its own: XML ⇄ model, schema notes, and `warngate validate`."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cap import CAP_NS, check_limits, decode, decode_xml, encode_xml, to_alert
from gateway.cli import main
from gateway.errors import BadRequest, Unprocessable
from gateway.models import Alert, parse_circle
from gateway.settings import IngestLimits
from tests import alerts as A
from tests.conftest import ROOT, SAMPLE_CONFIG

SIGNED = ROOT / "tests/data/rainstorm_red_signed.xml"


def test_xml_round_trip_keeps_every_element() -> None:
    data = A.alert(
        infos=[A.info(polygon="44.0,87.2 44.1,87.2 44.1,87.3 44.0,87.2", circle="44.0,87.3 5")]
    )
    data["references"] = "a@b,X1,2026-07-01T12:00:00+08:00 a@b,X2,2026-07-01T13:00:00+08:00"
    data["msgType"] = "Update"
    model = Alert.model_validate(data)
    xml = encode_xml(model)
    parsed, notes = decode_xml(xml)
    assert notes == []
    assert to_alert(parsed) == model
    assert to_alert(parsed).to_cap_dict() == model.to_cap_dict()


def test_json_and_xml_of_the_same_alert_give_the_same_model() -> None:
    data = A.alert()
    from_json = to_alert(decode(__import__("orjson").dumps(data), "application/json").data)
    from_xml = to_alert(decode(A.to_xml(data), "application/cap+xml; charset=utf-8").data)
    assert from_json == from_xml


def test_wrapped_json_and_single_values_are_read() -> None:
    data = A.alert()
    data["info"] = data["info"][0]  # a bare object where CAP allows many
    data["info"]["category"] = "Met"
    body = __import__("orjson").dumps({"alert": data})
    alert = to_alert(decode(body, "application/json").data)
    assert alert.info[0].category[0].value == "Met"


def test_z_time_and_foreign_elements_are_schema_notes() -> None:
    xml = A.to_xml(A.alert()).replace(b"-00:00</sent>", b"Z</sent>")
    xml = xml.replace(b"<scope>", b'<x:extra xmlns:x="urn:other">1</x:extra><scope>')
    data, notes = decode_xml(xml)
    msgs = {n.loc: n.msg for n in notes}
    assert "CAP 1.2 writes times" in msgs["alert.sent"]
    assert "not allowed here" in msgs["alert.extra"]
    to_alert(data)  # still a valid alert


def test_repeated_single_element_is_an_error() -> None:
    # Two <identifier>s: the last one won, silently. Which one the sender meant, nobody
    # knows, so the alert is refused, naming the element.
    data = A.alert()
    xml = A.to_xml(data).replace(
        b"<identifier>", b"<identifier>OTHER-ID</identifier><identifier>", 1
    )
    with pytest.raises(Unprocessable) as info:
        decode_xml(xml)
    assert info.value.code == "invalid-cap"
    assert [e.loc for e in info.value.errors] == ["identifier"]
    assert "only once" in info.value.errors[0].msg
    xml = A.to_xml(data).replace(b"<scope>Public</scope>", b"<scope>Public</scope>" * 2)
    with pytest.raises(Unprocessable) as info:
        decode_xml(xml)
    assert [e.loc for e in info.value.errors] == ["scope"]


def test_hostile_xml_raises_bad_request() -> None:
    with pytest.raises(BadRequest) as info:
        decode_xml(b'<!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>')
    assert info.value.code == "hostile-xml"


def test_invalid_alert_lists_every_error() -> None:
    data = A.alert()
    data["status"] = "Nope"
    data["info"][0]["urgency"] = "Nope"
    with pytest.raises(Unprocessable) as info:
        to_alert(data)
    assert {e.loc for e in info.value.errors} == {"status", "info[0].urgency"}


def test_validate_cli_reports_ok_problems_and_gateway_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(
        A.to_xml(A.alert()).replace(b"<urgency>Immediate</urgency>", b"<urgency>Now</urgency>")
    )
    unordered = tmp_path / "order.xml"
    unordered.write_bytes(
        A.to_xml(A.alert())
        .replace(b"<scope>Public</scope>", b"")
        .replace(b"</info>", b"</info><scope>Public</scope>")
    )
    unknown = tmp_path / "unknown.json"
    data = A.alert()
    data["info"][0].update(eventCode=[], event="Meteor shower")
    unknown.write_bytes(__import__("orjson").dumps(data))

    assert main(["validate", str(SIGNED)]) == 0
    assert f"{SIGNED}: OK" in capsys.readouterr().out

    assert main(["validate", str(bad), str(unordered), str(unknown)]) == 1
    out = capsys.readouterr().out
    assert "info[0].urgency" in out
    assert "alert.scope: <scope> is out of the order" in out
    assert f"{unknown}: OK" in out  # plain CAP check: the hazard is not CAP's business

    assert main(["validate", "--config", str(SAMPLE_CONFIG), str(unknown)]) == 1
    assert "unknown hazard" in capsys.readouterr().out


CAP12 = sorted((ROOT / "tests/data/cap12").glob("*.xml"))


@pytest.mark.parametrize("path", CAP12, ids=[p.stem for p in CAP12])
def test_examples_after_the_cap12_appendix_are_valid(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, notes = decode_xml(path.read_bytes())
    assert notes == []
    to_alert(data)
    assert main(["validate", str(path)]) == 0
    assert f"{path}: OK" in capsys.readouterr().out


def test_a_circle_of_radius_zero_is_a_point() -> None:
    # Example A.3's epicentre: refused before as "radius must be positive".
    data, _ = decode_xml((ROOT / "tests/data/cap12/a3_earthquake_update.xml").read_bytes())
    alert = to_alert(data)
    assert alert.info[0].area[0].circle == ["32.9525,-115.5527 0"]
    assert parse_circle(alert.info[0].area[0].circle[0]) == (32.9525, -115.5527, 0.0)
    for text in ("32.9525,-115.5527 -1", "32.9525,-115.5527 20038", "1,2 nan", "1,2 ５"):
        with pytest.raises(ValueError, match="circle radius"):
            parse_circle(text)


def test_limits_are_counted_before_validation() -> None:
    limits = IngestLimits()
    for data, name in (
        ({"info": [{}] * 33}, "info"),
        ({"info": [{"area": [{}] * 1001}]}, "areas"),
        ({"info": [{"area": [{"geocode": [{}] * 5001}]}]}, "geocodes"),
        ({"info": [{"parameter": [{}] * 501}]}, "parameters"),
        ({"references": "a,b,c " * 501}, "references"),
        ({"info": [{"category": ["Met"] * 51}]}, "values"),
        ({"x": [[1]] * 50_001}, "nodes"),
    ):
        with pytest.raises(Unprocessable) as info:
            check_limits(data, limits)
        assert info.value.code == "over-limit"
        assert [x["limit"] for x in info.value.extra["limits"]] == [name]
    nested: dict[str, object] = {}
    for _ in range(20):
        nested = {"n": nested}
    with pytest.raises(Unprocessable) as info:
        check_limits({"note": nested}, limits)
    assert info.value.extra["limits"][0]["limit"] == "depth"
    with pytest.raises(Unprocessable):  # XML: elements are counted before anything else
        decode_xml(f'<alert xmlns="{CAP_NS}">'.encode() + b"<info/>" * 100_001 + b"</alert>")


def test_errors_in_an_answer_are_capped_and_counted() -> None:
    data = A.alert()
    for i in range(300):
        data[f"unknown{i}"] = 1
    with pytest.raises(Unprocessable) as info:
        to_alert(data, IngestLimits(errors=20))
    assert len(info.value.errors) == 20
    assert info.value.extra["errors_omitted"] == 280
    long_key = A.alert()
    long_key["k" * 100_000] = 1
    with pytest.raises(Unprocessable) as info:
        to_alert(long_key)
    assert len(info.value.errors[0].loc) < 300
    assert len(info.value.detail) < 1000
