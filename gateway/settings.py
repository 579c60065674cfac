"""Settings: one typed object, validated at start-up, from `gateway.yaml` and the environment.

Precedence, highest first: explicit arguments (the command line), `WARNGATE_*`
environment variables (nested keys joined by `__`, e.g. `WARNGATE_INGEST__MAX_BODY_BYTES`),
`REDIS_URL`, the `gateway.yaml` file of the configuration directory, the defaults here.
A bad value fails at start with its key name (`ConfigError`).
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.errors import ConfigError, ConfigIssue
from gateway.models import Channel, ProviderConfig

__all__ = [
    "BreakerSettings",
    "ChannelRoute",
    "ConsoleSettings",
    "DispatchSettings",
    "EndpointSettings",
    "IngestLimits",
    "IngestSettings",
    "MqttSettings",
    "ProcessSettings",
    "RedisSettings",
    "RenderSettings",
    "Settings",
    "SigningSettings",
    "default_data_dir",
    "load_settings",
    "packaged_dir",
]

SETTINGS_FILE = "gateway.yaml"


def default_data_dir() -> Path:
    """Where the embedded Redis keeps its append-only file: the user's state directory."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "warngate"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisSettings(_Section):
    # None: start an embedded redis-server in data_dir (see gateway/redis_server.py).
    url: SecretStr | None = None
    # Every key starts with this; lets several gateways (or test runs) share one server.
    prefix: str = Field(default="wg", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    connect_timeout_s: float = Field(default=3.0, gt=0)
    command_timeout_s: float = Field(default=5.0, gt=0)
    # Connections per process; requests beyond wait for a free one.
    max_connections: int = Field(default=64, ge=8, le=10_000)


class IngestLimits(_Section):
    """How much one alert may hold, counted on the decoded body before it is validated:
    a body over a limit costs a walk of the parsed body, never a full validation."""

    info: int = Field(default=32, ge=1)
    # The rest are totals over all info blocks (or areas) of the alert.
    areas: int = Field(default=1000, ge=1)
    polygons: int = Field(default=200, ge=0)
    points: int = Field(default=50_000, ge=4)
    circles: int = Field(default=200, ge=0)
    geocodes: int = Field(default=5000, ge=0)
    parameters: int = Field(default=500, ge=0)
    event_codes: int = Field(default=200, ge=0)
    resources: int = Field(default=50, ge=0)
    references: int = Field(default=500, ge=0)
    # Entries of any other list (category, responseType, code), per list.
    values: int = Field(default=50, ge=1)
    # JSON values (objects, arrays, strings, numbers …) or XML elements in the body.
    nodes: int = Field(default=100_000, ge=100)
    # Field errors listed in one problem answer; the rest are counted, not listed.
    errors: int = Field(default=20, ge=1, le=1000)


class IngestSettings(_Section):
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    limits: IngestLimits = IngestLimits()
    # Bodies larger than this are parsed and validated in a worker thread, so that the
    # event loop keeps answering other requests meanwhile.
    thread_above_bytes: int = Field(default=32 * 1024, ge=0)
    # A circle larger than this is refused, never clipped: a radius typed in metres
    # instead of kilometres must not warn a whole region.
    max_circle_km: float = Field(default=500.0, gt=0, le=20_000)
    # `sent` may be at most this far ahead of the gateway's clock (clock skew).
    max_future_s: int = Field(default=24 * 3600, ge=0)
    # Alerts whose info blocks carry no `expires` stay live this long.
    default_lifetime_s: int = Field(default=24 * 3600, ge=60)
    # CAP geocode valueNames read as Chinese division codes (case-insensitive).
    geocode_names: list[str] = [
        "CPEAS Geographic Code",
        "GB/T 2260",
        "GB2260",
        "adcode",
        "division",
        "行政区划代码",
    ]
    # How often expired alerts are swept to the `expired` state.
    expiry_sweep_s: float = Field(default=1.0, gt=0)


class BreakerSettings(_Section):
    """When a primary provider counts as failing, and for how long traffic moves away."""

    window_s: float = Field(default=30.0, gt=0)
    error_rate: float = Field(default=0.5, gt=0, le=1)
    min_calls: int = Field(default=6, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)


class ChannelRoute(_Section):
    primary: str
    secondary: str | None = None
    breaker: BreakerSettings = BreakerSettings()


_ROUTE_KINDS = {
    Channel.SMS: "sms_http",
    Channel.MESSENGER: "sms_http",
    Channel.APP: "app_http",
}


class DispatchSettings(_Section):
    """Planning and fan-out workers."""

    # Worker tasks run inside `warngate serve`; 0 leaves all work to `warngate worker`.
    workers: int = Field(default=1, ge=0)
    # Provider calls in flight per channel and worker.
    concurrency: int = Field(default=8, ge=1, le=256)
    # No more than this many messages to one phone per hour, across alerts (SMS)...
    recipient_hourly_limit: int = Field(default=6, ge=1)
    # ...except red alerts, which always go.
    red_overrides_limit: bool = True
    # Messenger reach: persons per household told, unless the unit says otherwise.
    household_size: float = Field(default=2.8, gt=0)
    # Recipients per stream entry for channels without a provider batch size.
    batch_size: int = Field(default=500, ge=1, le=10_000)
    # A worker's pending entries idle this long are taken over by another worker.
    claim_idle_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=8, ge=1)
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=300.0, gt=0)
    block_ms: int = Field(default=1000, ge=10)
    # A worker renews a lease this long; work of a worker whose lease ran out (it died)
    # is taken over, never that of a live one, however long it waits.
    worker_lease_s: float = Field(default=10.0, gt=0)
    # Receipts of a batch the provider took are written even if Redis is away for this
    # long (restarting, loading): otherwise the batch would be sent again.
    record_retry_s: float = Field(default=60.0, ge=0)


class SigningSettings(_Section):
    """Signatures on every message to a device (gateway/endpoints/signing.py)."""

    # The keys (<kid>.key private, mode 600; <kid>.pub; `active`), relative to the
    # configuration directory; unset: `keys` in data_dir. Made by `warngate keys`.
    keys_dir: Path | None = None
    # With no key there at start: make one of this algorithm (and log its id), or fail.
    generate_missing: bool = True
    algorithm: Literal["ed25519", "sm2-sm3"] = "ed25519"
    # How long a long-poll answer or an event stays good (its signed expiry).
    validity_s: float = Field(default=300.0, ge=10, le=86400)


class MqttSettings(_Section):
    """The MQTT transport to devices (gateway/endpoints/mqtt.py); off while `url` is unset."""

    # mqtt://user:password@host:1883, or mqtts:// for TLS (port 8883 by default).
    url: SecretStr | None = None
    # Topics: {prefix}/unit/{unit}/{kind}/{language}, {prefix}/device/{endpoint}/...
    prefix: str = Field(
        default="warngate", pattern=r"^[A-Za-z0-9_-]{1,32}(/[A-Za-z0-9_-]{1,32}){0,3}$"
    )
    # TLS: the CA that signed the broker's certificate (default: the system's).
    ca_file: Path | None = None
    # Gateway processes subscribe to device topics in this shared-subscription group.
    share_group: str = Field(default="warngate", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    # Between attempts to reach the broker again (doubling up to the maximum).
    reconnect_max_s: float = Field(default=30.0, gt=0)


class EndpointSettings(_Section):
    """The village pull API (loudspeakers and screens)."""

    max_wait_s: float = Field(default=60.0, gt=0)
    keepalive_s: float = Field(default=15.0, gt=0)
    # An endpoint whose last heartbeat is older than this counts as offline.
    healthy_within_s: float = Field(default=900.0, gt=0)
    # Coverage prediction: count a device that never sent a heartbeat as working.
    unknown_is_healthy: bool = True
    signing: SigningSettings = SigningSettings()
    mqtt: MqttSettings = MqttSettings()


class RenderSettings(_Section):
    """Channel limits checked after rendering (never silent truncation), and wordings."""

    # Uyghur, Kazakh and Mongolian texts with one guidance block need up to 8 UCS-2
    # segments; fewer drop the guidance (the short variant) for those languages.
    sms_max_segments: int = Field(default=8, ge=1, le=10)
    # A messenger task goes to a grid worker or information officer, who relays it: one
    # concatenated SMS of up to this many parts, so that the task in every language
    # carries all its guidance and the reply hint (Mongolian updates need 9).
    messenger_max_segments: int = Field(default=10, ge=1, le=15)
    loudspeaker_repeats: int = Field(default=2, ge=1, le=5)
    loudspeaker_max_seconds: float = Field(default=240.0, gt=0)
    app_max_chars: int = Field(default=4000, ge=100)
    app_max_title: int = Field(default=120, ge=10)
    # Screens page through longer texts; a text needing more pages is too long.
    display_max_pages: int = Field(default=8, ge=1, le=20)
    # The agency's choice of open wordings, per language: {ug: {warning: "…"}}; keys are
    # the `terms` of templates/strings/<lang>.yaml or dotted string keys (gateway/terms.py).
    terms: dict[str, dict[str, str]] = {}


def packaged_dir(name: str) -> Path:
    """A directory warngate ships beside its code: `templates`, or `config` (the sample).

    Installed from a wheel, both are package data under `gateway/_data/` (pyproject.toml
    maps them there); in a checkout (editable install, tests) they are the top-level
    directories beside `gateway/`.
    """
    installed = importlib.resources.files("gateway") / "_data" / name
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / name


def _default_templates() -> Path:
    return packaged_dir("templates")


class ProcessSettings(_Section):
    """Stopping and health of every warngate process (serve and worker)."""

    # On SIGTERM or SIGINT the process is gone within this many seconds: it stops taking
    # work, answers parked devices, lets batches in flight finish until shortly before
    # this, hands back the rest (left pending for another worker), then stops Redis.
    shutdown_grace_s: float = Field(default=5.0, ge=1, le=300)
    # /readyz fails when a background loop has had no good round for this long because
    # it keeps failing (it is restarted after each error).
    loop_stale_s: float = Field(default=30.0, gt=0)
    # /readyz gives Redis this long to answer.
    ready_timeout_s: float = Field(default=2.0, gt=0)


class CoverageSettings(_Section):
    # How often the live monitor refreshes coverage gauges and checks unit deadlines.
    interval_s: float = Field(default=15.0, gt=0)
    # When each unit is checked, as shares of its deadline: an early check (against
    # its trajectory) leaves an escalation step time to land; 1.0 is the deadline.
    checkpoints: list[float] = Field(default=[0.5, 1.0], min_length=1, max_length=10)
    # Where `serve` writes periodic statistics on its own (empty: it does not).
    reports_dir: Path | None = None
    reports_periods: list[str] = ["daily", "monthly"]

    @field_validator("checkpoints")
    @classmethod
    def _shares(cls, value: list[float]) -> list[float]:
        if any(not 0 < x <= 1 for x in value):
            raise ValueError("checkpoints are shares of the deadline, above 0 and at most 1")
        return sorted(set(value))

    @field_validator("reports_periods")
    @classmethod
    def _periods(cls, value: list[str]) -> list[str]:
        allowed = {"daily", "weekly", "monthly", "quarterly", "annual"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"unknown periods {unknown}; allowed: {sorted(allowed)}")
        return value


class RetentionSettings(_Section):
    """How long what warngate keeps lives (docs/operations.md, "Retention")."""

    # Per-recipient data — delivery receipts, which recipients a batch reached, dead
    # letters (with phone numbers) — is removed this many days after the alert's expiry.
    recipient_days: float = Field(default=30.0, gt=0, le=3660)
    # What reports need — alert records, counters per unit and channel, plan summaries,
    # rendered texts, escalations — is kept this many days after the alert's expiry.
    report_days: float = Field(default=400.0, gt=0, le=36600)

    @model_validator(mode="after")
    def _reports_outlive_recipients(self) -> RetentionSettings:
        if self.report_days < self.recipient_days:
            raise ValueError("report_days must be at least recipient_days")
        return self


class ConsoleSettings(_Section):
    """The duty desk in the browser (`/console/`, docs/console.md): accounts, sessions."""

    enabled: bool = True
    # Operator accounts (`warngate account`); default: accounts.yaml of the config directory.
    accounts_file: Path | None = None
    # A session ends after this long without a request, and in any case after max_s.
    idle_s: float = Field(default=900.0, ge=30, le=86_400)
    max_s: float = Field(default=12 * 3600.0, ge=60, le=7 * 86_400)
    # This many failed logins of one account within window_s lock it for lockout_s.
    lockout_failures: int = Field(default=5, ge=1, le=100)
    lockout_window_s: float = Field(default=900.0, gt=0)
    lockout_s: float = Field(default=900.0, gt=0)
    # Session cookies carry Secure: "auto" when the request came over TLS (or a proxy
    # said so in X-Forwarded-Proto), "always", or "never".
    secure_cookies: str = Field(default="auto", pattern=r"^(auto|always|never)$")
    # The watch page's server-sent events: one snapshot at most this often.
    watch_every_s: float = Field(default=2.0, ge=0.2, le=60)
    # Scheduled tests (canaries.yaml): how often schedules are checked, and how long a
    # run waits for every canary receipt before it counts as failed.
    canary_check_s: float = Field(default=30.0, gt=0)
    canary_timeout_s: float = Field(default=600.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WARNGATE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    config_dir: Path = Path("config")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")
    redis: RedisSettings = RedisSettings()
    ingest: IngestSettings = IngestSettings()
    dispatch: DispatchSettings = DispatchSettings()
    endpoints: EndpointSettings = EndpointSettings()
    render: RenderSettings = RenderSettings()
    coverage: CoverageSettings = CoverageSettings()
    retention: RetentionSettings = RetentionSettings()
    process: ProcessSettings = ProcessSettings()
    console: ConsoleSettings = ConsoleSettings()
    templates_dir: Path = Field(default_factory=_default_templates)
    providers: dict[str, ProviderConfig] = {}
    channels: dict[Channel, ChannelRoute] = {}
    # Secret for relay-task codes and other derived tokens; set it in production.
    secret: SecretStr = SecretStr("warngate-demo-secret-change-me")

    @model_validator(mode="after")
    def _routes_name_providers(self) -> Settings:
        for channel, route in self.channels.items():
            if channel not in _ROUTE_KINDS:
                raise ValueError(f"channels.{channel}: pull channels have no provider")
            for name in filter(None, (route.primary, route.secondary)):
                provider = self.providers.get(name)
                if provider is None:
                    raise ValueError(f"channels.{channel}: unknown provider {name!r}")
                if provider.kind != _ROUTE_KINDS[channel]:
                    raise ValueError(
                        f"channels.{channel}: provider {name!r} is {provider.kind},"
                        f" needs {_ROUTE_KINDS[channel]}"
                    )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file comes in through load_settings() as the lowest-priority layer.
        return (init_settings, env_settings)


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path) -> Any:
    """Read one YAML file of a configuration directory; raise ConfigError naming it."""
    try:
        with path.open("rb") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise ConfigError([ConfigIssue(path.name, where, f"not valid YAML: {exc}")]) from None
    except OSError as exc:
        raise ConfigError([ConfigIssue(path.name, "", f"cannot read: {exc}")]) from None


def load_settings(config_dir: Path | str | None = None, **overrides: Any) -> Settings:
    """Settings for a configuration directory, with the environment and `overrides` on top."""
    directory = Path(config_dir or os.environ.get("WARNGATE_CONFIG") or "config")
    file_data: dict[str, Any] = {}
    path = directory / SETTINGS_FILE
    if path.exists():
        loaded = read_yaml(path)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError([ConfigIssue(SETTINGS_FILE, "", "must be a mapping of settings")])
        file_data = loaded or {}
    env_redis = os.environ.get("REDIS_URL")
    if env_redis and not os.environ.get("WARNGATE_REDIS__URL"):
        file_data = _merge(file_data, {"redis": {"url": env_redis}})
    # Environment variables beat the file: drop file keys the environment sets.
    data = _merge(file_data, {k: v for k, v in overrides.items() if v is not None})
    data["config_dir"] = directory
    env_keys = _env_paths()
    data = _drop_paths(data, env_keys - _paths(overrides))
    try:
        return Settings(**data)
    except ValidationError as exc:
        issues = []
        for err in exc.errors(include_url=False):
            key = ".".join(str(p) for p in err["loc"])
            source = "environment" if key in env_keys else SETTINGS_FILE
            issues.append(ConfigIssue(source, key, str(err["msg"])))
        raise ConfigError(issues) from None


def _env_paths() -> set[str]:
    out = set()
    for name in os.environ:
        if name.startswith("WARNGATE_") and name != "WARNGATE_CONFIG":
            out.add(name.removeprefix("WARNGATE_").lower().replace("__", "."))
    return out


def _paths(data: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for key, value in data.items():
        path = f"{prefix}{key}"
        out.add(path)
        if isinstance(value, dict):
            out |= _paths(value, path + ".")
    return out


def _drop_paths(data: dict[str, Any], paths: set[str], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if path in paths:
            continue
        out[key] = _drop_paths(value, paths, path + ".") if isinstance(value, dict) else value
    return out
