"""Storage: every Redis key name warngate uses, and what lives there.

All keys start with the configured prefix `p` (default `wg`).

Alerts
    p:alert:{id}              hash    record JSON, hash, state, links, state_at
    p:alerts                  zset    every accepted alert, by acceptance time (ms)
    p:live                    zset    alerts in state `active`, by expiry time (ms)
    p:pending                 zset    alerts waiting for approval, by expiry time (ms)
    p:review                  zset    emergency releases not yet reviewed, by release (ms)
    p:q:plan:{hi|lo}          stream  accepted alerts waiting for planning
    p:events                  stream  lifecycle changes (capped)
    p:audit                   stream  append-only: posts and state changes
Dispatch
    p:plan:{alert}            hash    plan summary (targets per unit × channel), `done`
    p:msg:{alert}             hash    rendered messages, `{channel}|{unit}|{lang}|{kind}`
    p:q:send:{channel}:{lane} stream  batches of recipients for one provider call
    p:att:{alert}             hash    attempts per batch entry (survives restarts)
    p:enq:{alert}             set     batches queued and counts made by its planning (a
                                      second planning run after a crash adds nothing)
    p:fly:{alert}:{channel}   hash    batches handed (or being handed) to a provider:
                                      batch key → recipient ids that may have the
                                      message; what a Cancel or Update counts as reached
    p:dead                    stream  batches that exhausted their attempts, with error
    p:rcpt:{alert}:{channel}  hash    recipient/endpoint id →
                                      `state|ms|unit|persons|lang|groups|attempts|note`
    p:log:{alert}:{channel}   string  reach log, per-recipient like p:rcpt (the same
                                      retention): one line per state change,
                                      `minute|state|unit|id|note`, and repeat plays
                                      and messengers' households (coverage/reach.py)
    p:agg:{alert}             hash    counters: `n|{ch}|{state}` deliveries per state,
                                      `r|{ch}|{unit}|{min}` persons confirmed reached in
                                      minute `min` after acceptance, `s|…` likewise sent,
                                      `L|{ch}|{unit}|{lang}`, `G|{ch}|{unit}|{group}`
    p:lease:{consumer}        string  a live worker's lease (renewed; gone = it died)
    p:rate:{provider}         hash    token bucket shared by all workers
    p:rr:{hour}               hash    messages per phone in one hour (per-recipient limit)
    p:cb:{provider}           hash    circuit breaker window counts and state
    p:relay:{code}            string  `alert|unit` of a messenger relay task code
    p:esc:{alert}             hash    unit → escalation taken at its deadline (JSON), once
Coverage (definition v2)
    p:survey:{alert}          hash    household id → what a post-alert survey found (JSON)
    p:covpost:{county}        list    JSON (alert, posterior mean and variance of the
                                      person-level model) of surveyed alerts, newest first
    p:covbcast:{YYYY-MM-DD}   hash    broadcast coverage snapshots of a (UTC) day:
                                      `{county}|sum`, `{county}|n` (periodic reports)
    p:covsum:{alert}          string  JSON: the alert's figures kept after per-recipient data
                                      expires: definition, D, C at the deadline and at
                                      the end, time to target … (periodic reports)
Console (gateway/console/)
    p:sess:{sha256 of token}  hash    a person's session: account, csrf, created, seen
    p:lfail:{account}         string  failed logins within the lockout window
    p:lock:{account}          string  set while the account is locked out
    p:canary:{schedule}       hash    scheduled test: last slot run, the run in progress
    p:canruns:{schedule}      list    its last 50 finished runs (JSON), newest first
Endpoints (loudspeakers and screens)
    p:unit:{unit}             hash    active state: alert id → entry JSON
    p:unitev                  stream  one entry per unit-state change (the cursor space)
    p:ep:{id}                 hash    last seen, health
    p:epseen                  zset    endpoint id → last heartbeat (ms)
    p:eplast                  hash    endpoint id → last request of any kind (ms)
    p:mqttlead                string  the process publishing unit views to the MQTT
                                      broker (a lease, renewed; gone = another takes it)
"""

from __future__ import annotations

__all__ = ["Keys"]


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def _(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # alerts
    def alert(self, alert: str) -> str:
        return self._("alert", alert)

    @property
    def alerts(self) -> str:
        return self._("alerts")

    @property
    def live(self) -> str:
        return self._("live")

    @property
    def pending(self) -> str:
        return self._("pending")

    @property
    def review(self) -> str:
        return self._("review")

    def plan_queue(self, lane: str) -> str:
        return self._("q", "plan", lane)

    @property
    def events(self) -> str:
        return self._("events")

    @property
    def audit(self) -> str:
        return self._("audit")

    # dispatch
    def plan(self, alert: str) -> str:
        return self._("plan", alert)

    def messages(self, alert: str) -> str:
        return self._("msg", alert)

    def send_queue(self, channel: str, lane: str) -> str:
        return self._("q", "send", channel, lane)

    def enqueued(self, alert: str) -> str:
        return self._("enq", alert)

    def attempts(self, alert: str) -> str:
        return self._("att", alert)

    def in_flight(self, alert: str, channel: str) -> str:
        return self._("fly", alert, channel)

    @property
    def dead(self) -> str:
        return self._("dead")

    def receipts(self, alert: str, channel: str) -> str:
        return self._("rcpt", alert, channel)

    def agg(self, alert: str) -> str:
        return self._("agg", alert)

    def reach_log(self, alert: str, channel: str) -> str:
        return self._("log", alert, channel)

    def surveys(self, alert: str) -> str:
        return self._("survey", alert)

    def posteriors(self, county: str) -> str:
        return self._("covpost", county)

    def coverage_summary(self, alert: str) -> str:
        return self._("covsum", alert)

    def broadcast_day(self, day: str) -> str:
        return self._("covbcast", day)

    def lease(self, consumer: str) -> str:
        return self._("lease", consumer)

    def rate(self, provider: str) -> str:
        return self._("rate", provider)

    def recipient_rate(self, hour: int) -> str:
        return self._("rr", str(hour))

    def breaker(self, provider: str) -> str:
        return self._("cb", provider)

    def relay(self, code: str) -> str:
        return self._("relay", code)

    def escalations(self, alert: str) -> str:
        return self._("esc", alert)

    # console
    def session(self, token_hash: str) -> str:
        return self._("sess", token_hash)

    def login_failures(self, account: str) -> str:
        return self._("lfail", account)

    def login_lock(self, account: str) -> str:
        return self._("lock", account)

    def canary(self, schedule: str) -> str:
        return self._("canary", schedule)

    def canary_runs(self, schedule: str) -> str:
        return self._("canruns", schedule)

    # endpoints
    def unit(self, unit: str) -> str:
        return self._("unit", unit)

    @property
    def unit_events(self) -> str:
        return self._("unitev")

    def endpoint(self, endpoint: str) -> str:
        return self._("ep", endpoint)

    @property
    def endpoints_seen(self) -> str:
        return self._("epseen")

    @property
    def last_requests(self) -> str:
        return self._("eplast")

    @property
    def mqtt_leader(self) -> str:
        return self._("mqttlead")
