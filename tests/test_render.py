"""Rendering: every channel × language × kind, limits after rendering, markers, scripts,
the language fallback order, and the lay-out rules for screens."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.sms import sms_segments
from gateway.auth import Agency
from gateway.config import Config, load_config
from gateway.errors import LimitExceeded, TemplateMissing
from gateway.models import Alert, AlertRecord, AlertState, Channel, Level
from gateway.plan import Kind
from gateway.render import RLM, Context, Rendered, Renderer, layout_lines, speech_seconds
from gateway.settings import RenderSettings
from tests import alerts as A
from tests.conftest import SAMPLE_CONFIG

UNIT = "652301001001"  # zh, ug
MONGOLIAN_UNIT = "150603001001"
LANGS = ["zh", "ug", "kk", "mn", "en"]
NNBSP = "\u202f"


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(SAMPLE_CONFIG)


@pytest.fixture(scope="module")
def renderer(cfg: Config) -> Renderer:
    s = cfg.settings
    return Renderer(s.templates_dir, cfg.hazards, cfg.directory, s.render)


def record(
    level: Level = Level.RED, status: str = "Actual", infos: list[dict[str, Any]] | None = None,
    hazard: str = "rainstorm",
) -> AlertRecord:  # fmt: skip
    data = A.alert(status=status, infos=infos, hazard=hazard)
    return AlertRecord(
        id="a1",
        agency="changji-met",
        received=datetime(2026, 7, 1, 4, 0, tzinfo=UTC),
        level=level,
        hazards=[hazard],
        state=AlertState.ACTIVE,
        content_hash="x",
        alert=Alert.model_validate(data),
        expires=datetime(2026, 7, 1, 10, 0, tzinfo=UTC),
    )


def english_only() -> list[dict[str, Any]]:
    """An alert whose only info block is in English: other languages use templates."""
    return [A.info(language="en-US", headline="Red rainstorm warning")]


def render(
    renderer: Renderer,
    channel: Channel,
    lang: str,
    kind: Kind = Kind.ALERT,
    *,
    rec: AlertRecord | None = None,
    previous: Level | None = None,
    unit: str = UNIT,
) -> Rendered:
    agency = Agency(
        id="changji-met",
        name={"zh": "昌吉州气象局", "ug": "سانجى ھاۋارايى", "kk": "سانجي اۋا رايى",
              "mn": "ᠴᠠᠭ ᠠᠭᠠᠷ", "en": "Changji Met"},
        api_keys=["sha256:" + "0" * 64],
        jurisdiction=["652300"],
        senders=[A.MET_SENDER],
        hazards=["*"],
    )  # fmt: skip
    ctx = Context(rec or record(infos=english_only()), kind, unit, agency, previous)
    return renderer.render(channel, lang, ctx)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("channel", list(Channel))
@pytest.mark.parametrize("kind", list(Kind))
def test_every_channel_language_and_kind_renders(
    renderer: Renderer, channel: Channel, lang: str, kind: Kind
) -> None:
    previous = Level.RED if kind is not Kind.ALERT else None
    level = Level.ORANGE if kind is Kind.UPDATE else Level.RED
    rec = record(level=level, infos=english_only())
    out = render(renderer, channel, lang, kind, rec=rec, previous=previous)
    assert out.language == lang  # every language has every template: no fallback
    assert out.text.strip()
    assert out.kind is kind
    if channel is Channel.SMS or channel is Channel.MESSENGER:
        assert out.segments is not None
        limits = RenderSettings()
        most = limits.sms_max_segments if channel is Channel.SMS else limits.messenger_max_segments
        assert out.segments <= most
    if channel is Channel.APP:
        assert out.title
    if channel is Channel.LOUDSPEAKER:
        assert out.seconds is not None
        assert out.seconds > 0
    if lang in ("ug", "kk") and channel in (Channel.SMS, Channel.APP, Channel.MESSENGER):
        assert out.text.startswith(RLM)  # right-to-left paragraph on any phone
        assert out.direction == "rtl"
    if lang == "mn":
        assert out.direction == "ttb"
        assert any("\u1820" <= c <= "\u18af" for c in out.text)  # traditional script


@pytest.mark.parametrize("lang", LANGS)
def test_loudspeaker_announces_the_level_first_and_repeats(renderer: Renderer, lang: str) -> None:
    out = render(renderer, Channel.LOUDSPEAKER, lang)
    announce = renderer.strings[lang]["level_warning"]["red"]
    assert out.text.lstrip(RLM).startswith(announce)
    joiner = renderer.strings[lang]["repeat_joiner"]
    assert out.text.count(joiner) == RenderSettings().loudspeaker_repeats - 1
    assert out.seconds == speech_seconds(out.text, lang)


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize(("status", "key"), [("Exercise", "exercise"), ("Test", "test")])
def test_exercise_and_test_messages_are_marked_in_their_language(
    renderer: Renderer, lang: str, status: str, key: str
) -> None:
    rec = record(status=status, infos=english_only())
    strings = renderer.strings[lang]
    for channel in (Channel.SMS, Channel.APP, Channel.DISPLAY, Channel.MESSENGER):
        out = render(renderer, channel, lang, rec=rec)
        assert strings[f"{key}_marker"] in out.text, channel
    spoken = render(renderer, Channel.LOUDSPEAKER, lang, rec=rec)
    assert spoken.text.lstrip(RLM).startswith(strings[f"{key}_spoken"])
    plain = render(renderer, Channel.SMS, lang)
    assert strings[f"{key}_marker"] not in plain.text


def test_level_changes_and_cancellations_say_so(renderer: Renderer) -> None:
    down = render(
        renderer, Channel.SMS, "zh", Kind.UPDATE,
        rec=record(level=Level.ORANGE, infos=english_only()), previous=Level.RED,
    )  # fmt: skip
    assert "由红色降为橙色" in down.text
    up = render(
        renderer, Channel.SMS, "zh", Kind.UPDATE,
        rec=record(level=Level.RED, infos=english_only()), previous=Level.YELLOW,
    )  # fmt: skip
    assert "升级为红色" in up.text
    lifted = render(renderer, Channel.LOUDSPEAKER, "zh", Kind.CANCEL, previous=Level.RED)
    assert lifted.text.startswith("暴雨预警解除")
    english = render(renderer, Channel.APP, "en", Kind.CANCEL, previous=Level.RED)
    assert "lifted" in (english.title or "").lower() + english.text.lower()


def test_the_agencys_own_text_is_preferred_in_its_language(renderer: Renderer) -> None:
    rec = record(infos=[A.info(language="zh-CN", headline="本台专门发布的标题")])
    assert "本台专门发布的标题" in render(renderer, Channel.SMS, "zh", rec=rec).text
    ug = render(renderer, Channel.SMS, "ug", rec=rec)  # no Uyghur info block: template
    assert "本台专门发布的标题" not in ug.text


def test_department_guidance_from_the_alert_or_the_shipped_texts(renderer: Renderer) -> None:
    shipped = render(renderer, Channel.APP, "zh").text
    assert "【气象部门】" in shipped
    own = [
        A.info(
            language="zh-CN",
            headline="",
            parameter=[
                {"valueName": "level", "value": "red"},
                {"valueName": "guidance:water_resources", "value": "沿河村庄立即转移。"},
            ],
        )
    ]
    text = render(renderer, Channel.APP, "zh", rec=record(infos=own)).text
    assert "沿河村庄立即转移" in text
    assert "【气象部门】" not in text
    chosen = [
        A.info(
            language="en-US",
            parameter=[
                {"valueName": "level", "value": "red"},
                {"valueName": "guidance", "value": "water_resources"},
            ],
        )
    ]
    picked = render(renderer, Channel.APP, "zh", rec=record(infos=chosen)).text
    assert "【水利部门】" in picked
    assert "【气象部门】" not in picked


def test_mongolian_suffix_spaces_survive_rendering(renderer: Renderer) -> None:
    out = render(renderer, Channel.APP, "mn", unit=MONGOLIAN_UNIT)
    assert NNBSP in out.text


def templates_without(tmp_path: Path, renderer: Renderer, *missing: str) -> Path:
    out = tmp_path / "templates"
    shutil.copytree(renderer.dir, out)
    for rel in missing:
        shutil.rmtree(out / rel)
    return out


def test_fallback_follows_recipient_then_unit_languages_then_chinese(
    renderer: Renderer, cfg: Config, tmp_path: Path
) -> None:
    assert renderer.language_order("kk", UNIT) == ["kk", "zh", "ug"]
    trimmed = templates_without(tmp_path, renderer, "sms/kk", "sms/zh")
    r = Renderer(trimmed, cfg.hazards, cfg.directory, cfg.settings.render)
    out = render(r, Channel.SMS, "kk")
    assert (out.requested, out.language, out.fallback) == ("kk", "ug", True)
    assert "sms/ug/" in out.template


def test_hazard_specific_templates_come_before_generic_ones(renderer: Renderer) -> None:
    quake = record(hazard="earthquake", infos=english_only())
    assert render(renderer, Channel.SMS, "zh", rec=quake).template == "sms/zh/alert.earthquake.j2"
    assert render(renderer, Channel.SMS, "zh").template == "sms/zh/alert.j2"


def test_missing_template_is_a_clear_error(renderer: Renderer, cfg: Config, tmp_path: Path) -> None:
    trimmed = templates_without(tmp_path, renderer, *(f"messenger/{lang}" for lang in LANGS))
    r = Renderer(trimmed, cfg.hazards, cfg.directory, cfg.settings.render)
    with pytest.raises(TemplateMissing) as info:
        render(r, Channel.MESSENGER, "kk")
    assert "messenger/kk/alert.rainstorm.j2" in str(info.value)
    assert "messenger/zh/alert.j2" in str(info.value)


def test_too_long_gets_the_shorter_variant_then_a_typed_error(
    cfg: Config, renderer: Renderer
) -> None:
    full = render(renderer, Channel.SMS, "zh")
    assert full.variant == "full"
    tight = Renderer(
        renderer.dir, cfg.hazards, cfg.directory,
        RenderSettings(sms_max_segments=full.segments - 1),  # type: ignore[operator]
    )  # fmt: skip
    short = render(tight, Channel.SMS, "zh")
    assert short.variant == "short"
    assert short.segments is not None
    assert short.segments < full.segments  # type: ignore[operator]
    impossible = Renderer(renderer.dir, cfg.hazards, cfg.directory, RenderSettings(
        sms_max_segments=1, loudspeaker_max_seconds=5))  # fmt: skip
    with pytest.raises(LimitExceeded) as info:
        render(impossible, Channel.SMS, "ug")
    assert (info.value.limit, info.value.allowed) == ("sms-segments", 1)
    with pytest.raises(LimitExceeded) as speech:
        render(impossible, Channel.LOUDSPEAKER, "zh")
    assert speech.value.limit == "speech-seconds"


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("a" * 160, "gsm7", 160, 1),
        ("a" * 161, "gsm7", 161, 2),
        ("a" * 306, "gsm7", 306, 2),
        ("a" * 307, "gsm7", 307, 3),
        ("€" * 80, "gsm7", 160, 1),  # extension characters count twice
        ("{" * 81, "gsm7", 162, 2),
        ("雨" * 70, "ucs2", 70, 1),
        ("雨" * 71, "ucs2", 71, 2),
        ("雨" * 134, "ucs2", 134, 2),
        ("雨" * 135, "ucs2", 135, 3),
        ("Rain 暴雨", "ucs2", 7, 1),  # one Chinese character makes the whole SMS UCS-2
        ("\u200fقاتتىق يامغۇر", "ucs2", 14, 1),
        ("ᠪᠣᠷᠤᠭ᠎ᠠ", "ucs2", 7, 1),
        ("😀" * 35, "ucs2", 70, 1),  # outside the BMP: two UTF-16 units each
    ],
)
def test_sms_segments(text: str, encoding: str, units: int, segments: int) -> None:
    assert sms_segments(text) == (encoding, units, segments)


def test_screen_layout_rules() -> None:
    assert layout_lines("暴雨红色预警请立即转移", 4, 10) == ["暴雨红色", "预警请立", "即转移"]
    # A closing mark never starts a line: the last character moves down with it.
    assert layout_lines("暴雨来了，快跑", 4, 10) == ["暴雨来", "了，快跑"]
    word = f"ᠪᠣᠷᠤᠭ᠎ᠠ{NNBSP}ᠶᠢᠨ"  # "of the rain": the suffix after a narrow no-break space
    lines = layout_lines(f"{word} ᠰᠡᠷᠡᠮᠵᠢᠯᠡᠭᠦᠯᠭᠡ", len(word) + 1, 10)
    assert lines[0] == word  # the suffix stays with its word
    assert layout_lines("heavy rain now", 6, 10) == ["heavy", "rain", "now"]
    with pytest.raises(LimitExceeded) as info:
        layout_lines("暴雨" * 20, 4, 3)
    assert (info.value.limit, info.value.measured, info.value.allowed) == ("display-lines", 10, 3)


def test_screens_of_the_unit_bound_the_display_text(cfg: Config, renderer: Renderer) -> None:
    unit = next(
        e.unit for e in cfg.directory.endpoints.values()
        if e.display is not None and e.display.lines <= 2
    )  # fmt: skip
    strict = Renderer(renderer.dir, cfg.hazards, cfg.directory, RenderSettings(display_max_pages=1))
    with pytest.raises(LimitExceeded):
        render(strict, Channel.DISPLAY, "ug", unit=unit)


def test_rendering_marks_the_speech_estimate() -> None:
    assert speech_seconds("暴雨" * 20, "zh") == 10.0  # four characters a second
    assert speech_seconds("one two three four", "en") == pytest.approx(4 / 2.3, abs=0.1)


def test_a_screen_too_small_for_the_address_names_the_village_alone(
    cfg: Config, renderer: Renderer
) -> None:
    """The shorter variant of a screen text names the village, not its whole address:
    with a page budget where the full text does not fit, the short one does."""
    units = sorted({e.unit for e in cfg.directory.endpoints.values() if e.display is not None})
    budgets = [
        Renderer(renderer.dir, cfg.hazards, cfg.directory, RenderSettings(display_max_pages=n))
        for n in range(1, 6)
    ]
    found = []
    for unit in units:
        for lang in cfg.directory.divisions[unit].languages:
            for tight in budgets:
                try:
                    out = render(tight, Channel.DISPLAY, lang, unit=unit)
                except LimitExceeded:
                    continue
                if out.variant == "short":
                    found.append((unit, lang))
                    assert renderer.place(unit, lang) not in out.text
                    assert renderer._label(unit, lang) in out.text
                break
    assert found  # some screens of the sample are that small


def test_every_shipped_template_compiles(cfg: Config, renderer: Renderer) -> None:
    """Serving processes compile all templates at start (the first warning does not
    wait for jinja2), so a template that does not compile fails here, not at an alert."""
    shipped = {
        str(p.relative_to(renderer.dir)) for p in renderer.dir.rglob("*.j2")
    }  # fmt: skip
    fresh = Renderer(renderer.dir, cfg.hazards, cfg.directory, RenderSettings())
    assert fresh.compile_all() == len(shipped) > 80


def test_the_right_to_left_mark_takes_no_room_on_a_screen() -> None:
    """Every line of a ug/kk text starts with U+200F: it stays, at the start of the
    paragraph's first screen line, but a line of `width` letters still fits."""
    text = f"{RLM}قاتتىق شامال\n{RLM}سانجى شەھىرى"
    assert layout_lines(text, 12, 4) == [f"{RLM}قاتتىق شامال", f"{RLM}سانجى شەھىرى"]
    assert layout_lines(f"{RLM}قاتتىق شامال", 6, 4) == [f"{RLM}قاتتىق", "شامال"]
