"""Settings and configuration directories: precedence, and errors that name their key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.settings import load_settings
from tests.conftest import SAMPLE_CONFIG


def test_file_then_environment_then_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gateway.yaml").write_text("port: 9000\ningest:\n  max_body_bytes: 4096\n")
    assert load_settings(tmp_path).port == 9000
    monkeypatch.setenv("WARNGATE_PORT", "9100")
    monkeypatch.setenv("WARNGATE_INGEST__MAX_BODY_BYTES", "8192")
    s = load_settings(tmp_path)
    assert (s.port, s.ingest.max_body_bytes) == (9100, 8192)
    assert load_settings(tmp_path, port=9200).port == 9200


def test_redis_url_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6390/2")
    s = load_settings(tmp_path)
    assert s.redis.url is not None
    assert s.redis.url.get_secret_value() == "redis://127.0.0.1:6390/2"
    assert "6390" not in repr(s)  # a secret stays out of logs


def test_bad_setting_names_its_key_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gateway.yaml").write_text("port: 99999\nnonsense: 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    found = {(i.file, i.key) for i in info.value.issues}
    assert ("gateway.yaml", "port") in found
    assert ("gateway.yaml", "nonsense") in found
    (tmp_path / "gateway.yaml").write_text("")
    monkeypatch.setenv("WARNGATE_DISPATCH__MAX_ATTEMPTS", "zero")
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path)
    assert [(i.file, i.key) for i in info.value.issues] == [
        ("environment", "dispatch.max_attempts")
    ]


def test_sample_configuration_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(SAMPLE_CONFIG)]) == 0
    out = capsys.readouterr().out
    assert "OK" in out
    # Every unit of the sample can be measured over households (coverage definition v2).
    assert "households 190871 (537239 residents) in 185 of 185 units" in out
    assert "endpoints with a footprint 320 of 320" in out
    config = load_config(SAMPLE_CONFIG)
    assert len(config.directory.units) >= 150
    assert set(config.registry.agencies) >= {"changji-met", "changji-water", "changji-natres"}


def test_check_config_lists_every_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "config"
    shutil.copytree(SAMPLE_CONFIG, broken)
    agencies = (broken / "agencies.yaml").read_text()
    agencies = agencies.replace('jurisdiction: ["652328"]', 'jurisdiction: ["659999"]', 1)
    agencies = agencies.replace("hazards: [flood, mountain_torrent]", "hazards: [flood, meteors]")
    agencies = agencies.replace('api_keys: ["sha256:', 'api_keys: ["plain-key-', 1)
    (broken / "agencies.yaml").write_text(agencies)
    with (broken / "endpoints.csv").open("a") as fh:
        fh.write("ls-bad-1,loudspeaker,652301999999,zh,100,sha256:00,,false,,\n")
    with (broken / "recipients.csv").open("a") as fh:
        fh.write("rbad1,sms,12345,652301001001,zh,,1,false,0\n")
    assert main(["check-config", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "agencies.yaml: mori-met.jurisdiction: 659999 is not in divisions.yaml" in err
    assert "agencies.yaml: changji-water.hazards: unknown hazard 'meteors'" in err
    assert "api_keys" in err
    assert "never plain keys" in err
    assert "endpoints.csv: line" in err
    assert "652301999999 is not a village" in err
    assert "recipients.csv: line" in err
    assert "'12345' is not a Chinese mobile" in err


def test_invalid_division_tree_is_reported(tmp_path: Path) -> None:
    (tmp_path / "agencies.yaml").write_text("agencies: []\n")
    (tmp_path / "divisions.yaml").write_text(
        """divisions:
  - {code: "652301", name: {zh: 甲}}
  - {code: "652301001", name: {zh: 乙}}
  - {code: "652301001001", name: {zh: 丙}, population: 10,
     polygon: [[44.0, 87.0], [44.1, 87.1], [44.0, 87.1], [44.1, 87.0], [44.0, 87.0]]}
  - {code: "652301001001", name: {zh: 丁}, population: 10}
  - {code: "652301002001", name: {zh: 戊}, population: 10}
  - {code: "652302001001", name: {zh: 己}, parent: "652301001", population: 10}
"""
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    text = str(info.value)
    assert "divisions[652301001001]: duplicate code" in text
    assert "invalid polygon" in text
    assert "Self-intersection" in text
    assert "divisions[652301002001].parent: parent 652301002 is not listed" in text
    assert "divisions[652302001001]: code is outside its parent 652301001" in text
    assert "no agency is configured" in text


def test_a_second_process_shares_the_embedded_redis(tmp_path: Path) -> None:
    from gateway.redis_server import EmbeddedRedis

    assert EmbeddedRedis.running(tmp_path) is None
    with EmbeddedRedis(tmp_path, persistent=True) as first:
        assert EmbeddedRedis.running(tmp_path) == first.url
    assert EmbeddedRedis.running(tmp_path) is None  # stopped: the marker is gone


def test_provider_status_tables_and_channel_routes_are_checked(tmp_path: Path) -> None:
    for name, old, new, expected in [
        ("statuses", "EXPIRED: expired}", "EXPIRED: gone}", "maps to 'gone'"),
        (
            "route",
            "  app: {primary: push, secondary: push-backup}\n",
            "",
            "channels.app: the policy sends through",
        ),
    ]:
        broken = tmp_path / name
        shutil.copytree(SAMPLE_CONFIG, broken)
        text = (broken / "gateway.yaml").read_text()
        assert old in text
        (broken / "gateway.yaml").write_text(text.replace(old, new))
        with pytest.raises(ConfigError) as info:
            load_config(broken)
        assert expected in str(info.value)
