"""Dispatch: the send stage — batches to providers, retried, rate limited, failed over.

Each push channel has two send streams (lane `hi` for red/orange is always read before
`lo`) and one consumer group; any number of workers may read them. For every batch:

1. the batch is registered as in flight, then the alert's lifecycle is checked:
   deliveries of a cancelled, superseded or expired alert are closed as
   `cancelled`/`expired`, never sent (nor retried once it ends). A Cancel or Update
   planned while a batch is in flight counts its recipients as reached, so they get
   the cancellation or update too;
2. recipients that already have a receipt beyond `queued` are dropped (the sent-set:
   a batch taken over after a crash does not send twice to anyone it reached);
3. the per-recipient hourly limit applies (SMS; red alerts may override it);
4. `send_with_retries` makes the provider calls: the one place where retries live.

Retries use tenacity: exponential backoff with jitter, or the provider's Retry-After;
bounded by `dispatch.max_attempts` (counted in Redis, so a restarted worker continues
the count) and by the alert's expiry. A batch that runs out goes to the dead-letter
stream with its last error. While a batch waits, its stream entry is re-claimed by its
worker so that no other worker takes it over as abandoned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base

from channels import Message, PushAdapter, Recipient, SendResult, adapter_class
from gateway.aio import sleep_or_stop
from gateway.config import Config
from gateway.errors import (
    CredentialsError,
    PermanentError,
    RetryableError,
    SendError,
    UncertainError,
)
from gateway.metrics import Metrics
from gateway.models import Channel, Level
from gateway.store import Batch, BatchRecipient, BatchStart, ReceiptUpdate, Store, now_ms
from gateway.store.deliveries import SEND_GROUP

__all__ = ["ClaimLost", "Sender", "build_adapters"]

log = logging.getLogger("warngate.dispatch")
KEEP_S = 30 * 24 * 3600


def build_adapters(config: Config, session: aiohttp.ClientSession) -> dict[str, PushAdapter]:
    """One adapter per (provider, channel) route, keyed `{channel}/{provider}`."""
    out: dict[str, PushAdapter] = {}
    providers = config.settings.providers
    for channel, route in config.settings.channels.items():
        for name in filter(None, (route.primary, route.secondary)):
            cls = adapter_class(channel, providers[name].kind)
            out[f"{channel}/{name}"] = cls(name, providers[name], session)
    return out


class ClaimLost(Exception):
    """Another worker took the batch over (this one was presumed dead): stop, send
    nothing more, acknowledge nothing."""


@dataclass
class _Outcome:
    sent: int = 0
    failed: int = 0
    closed: int = 0
    # Recipients of the batch who may have the message now: accepted by a provider, maybe
    # sent, or sent before. What a Cancel or Update of this alert must reach.
    reached: list[str] = field(default_factory=list)


class Sender:
    def __init__(
        self,
        config: Config,
        store: Store,
        metrics: Metrics,
        adapters: dict[str, PushAdapter],
        consumer: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        """`sleep` and `clock` (ms) are the seams for tests that check waits and
        circuit-breaker cool-downs without waiting for real time to pass."""
        self.config = config
        self.settings = config.settings.dispatch
        self.store = store
        self.metrics = metrics
        self.adapters = adapters
        self.consumer = consumer
        self.sleep = sleep
        self.clock = clock
        self.busy: set[str] = set()  # batch keys being handled by this process

    def batch_sizes(self) -> dict[Channel, int]:
        out = {}
        for channel, route in self.config.settings.channels.items():
            out[channel] = self.adapters[f"{channel}/{route.primary}"].batch_size
        return out

    # -- one batch ---------------------------------------------------------------------

    async def handle(self, stream: str, entry: str, fields: dict[str, str]) -> _Outcome:
        """Process one batch entry completely, then acknowledge it; the entry is kept
        fresh all the while, so that nobody takes it over as abandoned."""
        batch = Batch.from_fields(entry, stream, fields)
        self.busy.add(batch.key)
        try:
            async with keep_claim(
                self.store, stream, SEND_GROUP, self.consumer, entry, self.settings.claim_idle_s
            ):
                outcome = await self._handle(batch)
        except ClaimLost:
            log.warning("batch %s of %s was taken over by another worker", entry, stream)
            self.metrics.suppressed.labels(batch.channel, "taken-over").inc(len(batch.recipients))
            return _Outcome()
        finally:
            self.busy.discard(batch.key)
        await self.store.ack(stream, SEND_GROUP, entry)
        return outcome

    async def give_up(self, stream: str, entry: str, fields: dict[str, str], times: int) -> None:
        """A batch whose handling failed again and again (each time taken over after
        an unexpected error): its unsent recipients fail, to the dead letters."""
        try:
            batch = Batch.from_fields(entry, stream, fields)
        except Exception:  # not even readable: kept as it came, for the operator
            log.error("unreadable batch %s of %s given up after %d tries", entry, stream, times)
            await self.store.dead_letter_raw(stream, entry, fields, f"unreadable, {times} tries")
            self.metrics.dead_letters.labels(stream.rsplit(":", 2)[-2], "unreadable").inc()
            await self.store.ack(stream, SEND_GROUP, entry)
            return
        start = await self.store.batch_start(
            batch.alert, batch.channel, batch.key, [r.id for r in batch.recipients],
            batch.message, register_ttl_s=None,
        )  # fmt: skip
        todo = [r for r in batch.recipients if r.id not in start.sent]
        exc = PermanentError(f"handling the batch failed {times} times", code="unhandled")
        await self._dead_letter(batch, Channel(batch.channel), todo, exc, "-", "failed")
        await self._close(batch, todo, "failed", str(exc))
        await self.store.ack(stream, SEND_GROUP, entry)

    async def _handle(self, batch: Batch) -> _Outcome:
        # A batch is registered as in flight *before* the lifecycle is read (same round
        # trip, in that order): a Cancel or Update planned from now on counts these
        # recipients as reached; one planned before, this read sees. Nothing supersedes
        # a cancellation, so those are not registered.
        register = batch.kind != "cancel"
        start = await self.store.batch_start(
            batch.alert,
            batch.channel,
            batch.key,
            [r.id for r in batch.recipients],
            batch.message,
            register_ttl_s=KEEP_S if register else None,
        )
        # Left registered in full if anything escapes: whoever takes the batch over
        # ends it, and meanwhile its recipients count as reached.
        outcome = await self._handle_batch(batch, start)
        if register:
            expires_ms = start.life[1] if start.life else now_ms()
            keep = self.store.keep_s(expires_ms, report=False)
            await self.store.end_send(batch.alert, batch.channel, batch.key, outcome.reached, keep)
        return outcome

    async def _handle_batch(self, batch: Batch, start: BatchStart) -> _Outcome:
        channel = Channel(batch.channel)
        if start.life is None:
            log.error("batch %s for unknown alert %s dropped", batch.entry, batch.alert)
            return _Outcome()
        state, expires_ms, _ = start.life
        sent = start.sent
        todo = [r for r in batch.recipients if r.id not in sent]
        done = [r for r in batch.recipients if r.id in sent] if sent else []
        # Those sent before (a batch taken over) keep their state: closing applies only
        # to deliveries that never left.
        ended = None
        if batch.kind != "cancel" and state in ("cancelled", "updated"):
            ended = ("cancelled", f"alert {state}")
        elif state == "expired" or expires_ms <= now_ms():
            ended = ("expired", "alert expired")
        if ended is not None:
            outcome = await self._close(batch, todo, *ended)
            outcome.reached = [r.id for r in done]
            return outcome
        if done:
            # Already sent (a batch taken over after a crash, or a receipt that came
            # before our own record): not again. Telling the store what these deliveries
            # stand for lets it count a receipt that arrived first.
            self.metrics.suppressed.labels(batch.channel, "already-sent").inc(len(done))
            await self.store.record(
                batch.alert,
                batch.channel,
                [
                    ReceiptUpdate(r.id, "sent", batch.unit, r.persons, batch.language, r.groups)
                    for r in done
                ],
                accepted_ms=batch.accepted_ms,
                reach_state=reach_state(channel),
            )
        todo = await self._recipient_limit(batch, channel, todo)
        before = [r.id for r in done]
        if not todo:
            return _Outcome(reached=before)
        message = self._message(batch, start.message)
        if message is None:
            outcome = await self._close(batch, todo, "failed", "rendered message missing")
            outcome.reached = before
            return outcome
        outcome = await self.send_with_retries(
            batch, channel, todo, message, expires_ms, done_before=start.attempts
        )
        outcome.reached = before + outcome.reached
        return outcome

    async def _recipient_limit(
        self, batch: Batch, channel: Channel, todo: list[BatchRecipient]
    ) -> list[BatchRecipient]:
        if channel is not Channel.SMS or batch.kind == "cancel":
            return todo
        if batch.level == Level.RED.value and self.settings.red_overrides_limit:
            return todo
        allowed = await self.store.recipient_quota(
            [r.address for r in todo], self.settings.recipient_hourly_limit
        )
        over = [r for r, ok in zip(todo, allowed, strict=True) if not ok]
        if over:
            self.metrics.suppressed.labels(batch.channel, "recipient-limit").inc(len(over))
            await self._close(batch, over, "failed", "recipient hourly limit")
        return [r for r, ok in zip(todo, allowed, strict=True) if ok]

    def _message(self, batch: Batch, raw: str | None) -> Message | None:
        if raw is None:
            return None
        m = orjson.loads(raw)
        data = {
            "alert": batch.alert,
            "level": batch.level,
            "kind": batch.kind,
            "unit": batch.unit,
            "language": m["language"],
        }
        return Message(text=m["text"], language=m["language"], title=m.get("title"), data=data)

    # -- the one place retries live ------------------------------------------------------

    async def send_with_retries(
        self,
        batch: Batch,
        channel: Channel,
        todo: list[BatchRecipient],
        message: Message,
        expires_ms: int,
        *,
        done_before: int,
    ) -> _Outcome:
        """Provider calls for a batch until every recipient is taken, refused, maybe
        sent, or out of attempts (counted across restarts) or of time (the expiry).

        Retried: what the provider did not take (refused connections, 5xx, 429, ids it
        asks to retry), over the failover route when the breaker opens or the route
        refuses our credentials. Not retried: what the provider may have taken (no
        answer after the request went out, an unreadable answer, ids an answer left
        out), which counts as `sent` — unless the provider de-duplicates by delivery
        id (`idempotent`), where the same ids go again to the same provider."""
        outcome = _Outcome()
        remaining = {r.id: r for r in todo}
        left = self.settings.max_attempts - done_before
        if left <= 0:  # a batch taken over after its last attempt
            exc: SendError = PermanentError(
                f"all {self.settings.max_attempts} attempts made", code="attempts-exhausted"
            )
            await self._dead_letter(batch, channel, todo, exc, "-", "failed")
            outcome.closed += (await self._close(batch, todo, "failed", str(exc))).closed
            return outcome
        provider = "-"
        tries = 0
        pinned: PushAdapter | None = None  # the provider that may have the batch

        def past_expiry(rs: RetryCallState) -> bool:
            return time.time() + (rs.upcoming_sleep or 0) >= expires_ms / 1000

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome else None
            if isinstance(exc, SendError) and exc.retry_after is not None:
                return min(float(exc.retry_after), self.settings.backoff_max_s)
            n = done_before + rs.attempt_number
            base = self.settings.backoff_base_s
            backoff: float = min(self.settings.backoff_max_s, base * 2.0 ** (n - 1))
            return backoff + random.uniform(0, base)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(left) | stop_when(past_expiry),
            wait=wait,
            retry=retry_if_exception(lambda e: isinstance(e, SendError) and e.retryable),
            sleep=self._wait_to_retry,
            before_sleep=lambda rs: self.metrics.send_retries.labels(channel.value).inc(),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                if tries and batch.kind != "cancel" and await self._superseded(batch):
                    break  # cancelled or updated while waiting to retry: not sent
                with attempt:
                    tries += 1
                    if not await self.store.still_held(
                        batch.stream, SEND_GROUP, self.consumer, batch.entry
                    ):
                        raise ClaimLost(batch.key)
                    await self.store.add_attempt(batch.alert, batch.key, KEEP_S)
                    adapter = pinned or await self._choose(channel)
                    provider = adapter.name
                    await self._take_tokens(adapter, len(remaining))
                    n = done_before + tries
                    try:
                        result = await self._call(adapter, channel, batch, message, remaining)
                    except UncertainError as exc:
                        result = SendResult(uncertain=dict.fromkeys(remaining, exc.code))
                    if result.uncertain and adapter.config.idempotent and tries < left:
                        pinned = adapter  # the same ids, to the provider that may have them
                        result.retry.update(result.uncertain)
                        result.uncertain = {}
                    sent, failed = await self._apply(
                        batch, channel, adapter.name, remaining, result, n
                    )
                    outcome.sent += sent
                    outcome.failed += failed
                    took = [*result.accepted, *result.uncertain]
                    outcome.reached += [rid for rid in took if rid in remaining]
                    remaining = {rid: remaining[rid] for rid in result.retry if rid in remaining}
                    if remaining:
                        code = next(iter(result.retry.values()))
                        raise RetryableError(f"{len(remaining)} recipients to retry", code=code)
        except SendError as exc:
            # Retryable and attempts left: tenacity stopped at the alert's expiry.
            expired = time.time() * 1000 >= expires_ms or (exc.retryable and tries < left)
            state = "expired" if expired else "failed"
            await self._dead_letter(batch, channel, list(remaining.values()), exc, provider, state)
            closed = await self._close(batch, list(remaining.values()), state, str(exc))
            outcome.closed += closed.closed
            return outcome
        if remaining:  # left the loop: superseded between attempts
            closed = await self._close(batch, list(remaining.values()), "cancelled", "alert ended")
            outcome.closed += closed.closed
        return outcome

    async def _superseded(self, batch: Batch) -> bool:
        life = await self.store.lifecycle(batch.alert)
        return life is not None and life[0] in ("cancelled", "updated")

    async def _wait_to_retry(self, seconds: float) -> None:
        """Through `self.sleep`, looked up at each wait (tests and the stop replace it);
        the entry is kept fresh by `keep_claim` meanwhile."""
        await self.sleep(seconds)

    async def _call(
        self,
        adapter: PushAdapter,
        channel: Channel,
        batch: Batch,
        message: Message,
        remaining: dict[str, BatchRecipient],
    ) -> SendResult:
        prefix = f"{batch.alert}:{channel.value}:"  # = delivery_id(alert, channel, "")
        recipients = [Recipient(prefix + r.id, r.address) for r in remaining.values()]
        try:
            result = await adapter.send(message, recipients)
        except SendError as exc:
            kind = "uncertain" if isinstance(exc, UncertainError) else (
                "retryable" if exc.retryable else "permanent")  # fmt: skip
            self.metrics.send_attempts.labels(channel.value, adapter.name, kind).inc()
            if isinstance(exc, CredentialsError):
                raise await self._credentials(channel, adapter.name, exc) from exc
            # A refused request says nothing against the provider's health; silence does.
            await self._breaker(channel, adapter.name, ok=isinstance(exc, PermanentError))
            raise
        except Exception as exc:  # an adapter bug: typed, so that retries stay bounded
            log.exception("adapter %s failed unexpectedly", adapter.name)
            self.metrics.send_attempts.labels(channel.value, adapter.name, "uncertain").inc()
            raise UncertainError(f"{type(exc).__name__}: {exc}", code="adapter-error") from exc
        self.metrics.send_attempts.labels(channel.value, adapter.name, "ok").inc()
        await self._breaker(channel, adapter.name, ok=True)
        cut = len(prefix)  # the adapter only answers for the ids it was given
        return SendResult(
            accepted={k[cut:]: v for k, v in result.accepted.items()},
            rejected={k[cut:]: v for k, v in result.rejected.items()},
            retry={k[cut:]: v for k, v in result.retry.items()},
            uncertain={k[cut:]: v for k, v in result.uncertain.items()},
        )

    async def _credentials(
        self, channel: Channel, provider: str, exc: CredentialsError
    ) -> SendError:
        """A route that refuses our credentials: open its breaker at once so that every
        worker fails over, and tell the operator. Without another route the batch
        cannot pass: then it is a permanent failure, not a retry."""
        self.metrics.credentials_errors.labels(provider).inc()
        log.error("provider %s refuses warngate's credentials: %s", provider, exc)
        route = self.config.settings.channels[channel]
        if provider == route.primary and route.secondary:
            await self.store.breaker_open(
                provider, int(route.breaker.cooldown_s * 1000), now=self.clock()
            )
            self.metrics.circuit_state.labels(provider).set(1)
            return exc
        return PermanentError(exc.message, code=exc.code, status=exc.status)

    async def _apply(
        self,
        batch: Batch,
        channel: Channel,
        provider: str,
        remaining: dict[str, BatchRecipient],
        result: SendResult,
        attempts: int,
    ) -> tuple[int, int]:
        n = str(attempts)
        updates = [
            ReceiptUpdate(rid, "sent", batch.unit, r.persons, batch.language, r.groups, n, provider)
            for rid in result.accepted
            if (r := remaining.get(rid)) is not None
        ]
        updates += [
            ReceiptUpdate(rid, "failed", batch.unit, r.persons, batch.language, r.groups, n, code)
            for rid, code in result.rejected.items()
            if (r := remaining.get(rid)) is not None
        ]
        # Maybe taken: what really happened as far as anyone knows. `sent` to this
        # provider (a delivery receipt may still confirm it), told of a Cancel or
        # Update like everyone sent, never sent again.
        maybe = [
            ReceiptUpdate(rid, "sent", batch.unit, r.persons, batch.language, r.groups, n, provider)
            for rid in result.uncertain
            if (r := remaining.get(rid)) is not None
        ]
        if maybe:
            code = next(iter(result.uncertain.values()))
            self.metrics.uncertain.labels(channel.value, provider, code).inc(len(maybe))
            log.warning(
                "%d %s deliveries of %s may have been taken by %s (%s): counted as sent,"
                " not sent again", len(maybe), channel.value, batch.alert, provider, code,
            )  # fmt: skip
            updates += maybe
        await self._record_what_the_provider_took(batch, channel, updates)
        sent, failed = len(result.accepted) + len(maybe), len(result.rejected)
        self.metrics.deliveries.labels(channel.value, provider, "sent").inc(sent)
        if failed:
            self.metrics.deliveries.labels(channel.value, provider, "failed").inc(failed)
        age = max(0.0, (now_ms() - batch.accepted_ms) / 1000)
        self.metrics.latency.observe((channel.value, "sent"), age, sent)
        return sent, failed

    async def _record_what_the_provider_took(
        self, batch: Batch, channel: Channel, updates: list[ReceiptUpdate]
    ) -> None:
        """The provider has the batch: its receipts must be written, or the batch would
        be sent again by whoever takes it over. So a Redis that is away (restarting,
        loading its append-only file, failing over) is waited for, up to
        `dispatch.record_retry_s`, rather than given up at once."""
        deadline = time.monotonic() + self.settings.record_retry_s
        pause = 0.1
        while True:
            try:
                await self.store.record(
                    batch.alert,
                    channel.value,
                    updates,
                    accepted_ms=batch.accepted_ms,
                    reach_state=reach_state(channel),
                )
                return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("receipts of batch %s not written yet (%s); retrying", batch.key, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)

    async def _close(self, batch: Batch, recipients: Any, state: str, reason: str) -> _Outcome:
        updates = [
            ReceiptUpdate(r.id, state, batch.unit, r.persons, batch.language, r.groups, "", reason)
            for r in recipients
        ]
        await self.store.record(
            batch.alert,
            batch.channel,
            updates,
            accepted_ms=batch.accepted_ms,
            reach_state=reach_state(Channel(batch.channel)),
        )
        if updates:
            self.metrics.deliveries.labels(batch.channel, "-", state).inc(len(updates))
            log.info("%d %s deliveries of %s %s: %s", len(updates), batch.channel, batch.alert,
                     state, reason)  # fmt: skip
        return _Outcome(closed=len(updates))

    async def _dead_letter(
        self,
        batch: Batch,
        channel: Channel,
        recipients: list[BatchRecipient],
        exc: SendError,
        provider: str,
        state: str,
    ) -> None:
        if not recipients:
            return
        left = Batch(**{**batch.__dict__, "recipients": tuple(recipients)})
        attempts = await self.store.attempts(batch.alert, batch.key)
        await self.store.dead_letter(
            left,
            {
                "code": exc.code,
                "message": exc.message,
                "retryable": exc.retryable,
                "status": exc.status,
                "provider": provider,
                "attempts": attempts,
                "closed_as": state,
            },
        )
        self.metrics.dead_letters.labels(channel.value, exc.code).inc()
        log.warning(
            "dead letter: %d %s recipients of %s after %d attempts: %s",
            len(recipients),
            channel.value,
            batch.alert,
            attempts,
            exc,
        )

    # -- providers: failover and shared rate ---------------------------------------------

    async def _choose(self, channel: Channel) -> PushAdapter:
        route = self.config.settings.channels[channel]
        primary = self.adapters[f"{channel}/{route.primary}"]
        if not route.secondary:
            # Nowhere to fail over to: the provider's circuit (another channel may fail
            # over from it) is only reported, and its probe left to that channel.
            state = await self.store.breaker_peek(route.primary, now=self.clock())
            self.metrics.circuit_state.labels(route.primary).set(state)
            return primary
        probe_ms = int(route.breaker.cooldown_s * 1000)
        state = await self.store.breaker_state(route.primary, probe_ms, now=self.clock())
        self.metrics.circuit_state.labels(route.primary).set(state)
        if state == 1:
            self.metrics.failovers.labels(channel.value, route.primary, route.secondary).inc()
            return self.adapters[f"{channel}/{route.secondary}"]
        return primary

    async def _breaker(self, channel: Channel, provider: str, *, ok: bool) -> None:
        """Count a call for the breaker. Advisory: it runs between the provider's answer
        and the write of what it took, so a Redis that is away here must not lose the
        answer (the batch would be sent again); the count is skipped instead."""
        route = self.config.settings.channels[channel]
        if provider != route.primary or not route.secondary:
            return
        b = route.breaker
        try:
            state = await self.store.breaker_record(
                provider,
                ok,
                window_ms=int(b.window_s * 1000),
                error_rate=b.error_rate,
                min_calls=b.min_calls,
                cooldown_ms=int(b.cooldown_s * 1000),
                now=self.clock(),
            )
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("breaker of %s not counted (%s)", provider, exc)
            return
        self.metrics.circuit_state.labels(provider).set(state)

    async def _take_tokens(self, adapter: PushAdapter, n: int) -> None:
        rate = adapter.config.rate_per_s
        for _ in range(10_000):  # a shared bucket: wait as long as it says, then try again
            wait_ms = await self.store.take_tokens(adapter.name, n, rate, rate)
            if wait_ms <= 0:
                return
            await self.sleep(wait_ms / 1000)


@contextlib.asynccontextmanager
async def keep_claim(
    store: Store, stream: str, group: str, consumer: str, entry: str, idle_s: float
) -> AsyncIterator[None]:
    """Keep a stream entry fresh (its idle time well under `idle_s`) while the body
    runs, whatever it waits for. Stopped by an event, not by cancellation: redis-py
    may swallow the CancelledError of the command it is running."""
    step = max(idle_s / 3, 0.02)
    done = asyncio.Event()

    async def touch() -> None:
        while not done.is_set():
            await sleep_or_stop(done, step)
            if done.is_set():
                return
            try:
                await store.touch(stream, group, consumer, entry)
            except Exception:  # Redis away: the lease decides, and the next touch retries
                log.debug("could not refresh %s of %s", entry, stream, exc_info=True)

    task = asyncio.create_task(touch())
    try:
        yield
    finally:
        done.set()
        await task


class stop_when(stop_base):
    """A tenacity stop condition from a predicate on the retry state."""

    def __init__(self, predicate: Callable[[RetryCallState], bool]) -> None:
        self.predicate = predicate

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.predicate(retry_state)


def reach_state(channel: Channel) -> str:
    """Messengers reach people when they relay, not when they receive the task."""
    return "acknowledged" if channel is Channel.MESSENGER else ""
