"""Storage: the Lua scripts of the dispatch stage (receipts, rate limits, breakers).

The receipt script applies the state machine of `gateway.receipts` to a whole batch in
one call; its rank table is generated from `gateway.receipts.RANK`, so the rules live in
one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from gateway.receipts import CONFIRMED, FINAL, RANK

__all__ = [
    "ADVANCE",
    "BREAKER",
    "COUNT_ONCE",
    "ENQUEUE",
    "PROBE",
    "QUOTA",
    "SENT",
    "TOKENS",
    "TOUCH",
]


def _lua_table(values: Iterable[tuple[str, Any]]) -> str:
    return "{" + ", ".join(f"[{orjson.dumps(k).decode()}]={v}" for k, v in values) + "}"


ADVANCE = (
    f"local RANK = {_lua_table((s.value, r) for s, r in RANK.items())}\n"
    f"local FINAL = {_lua_table((s.value, 'true') for s in FINAL)}\n"
    f"local CONF = {_lua_table((s.value, 'true') for s in CONFIRMED)}\n"
    + """
-- KEYS: receipts hash, agg hash, alert hash (read for its expiry),
--       [reach log: one line per state change, for coverage v2]
-- ARGV: channel, now_ms, accepted_ms, reach_state ('' = any confirmed state),
--       implicit state of a delivery with no receipt yet ('queued' or ''),
--       ms the receipts are kept after the alert's expiry, ms the counters are,
--       then one argument per delivery: id, state, unit, persons, lang, groups,
--       attempts, note joined by U+001F
local ch, now, t0, reach_state = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local implicit = ARGV[5]
local keep_receipts, keep_counters = tonumber(ARGV[6]), tonumber(ARGV[7])
local minute = math.max(0, math.floor((now - t0) / 60000))
local function reached(state)
  if reach_state ~= '' then return state == reach_state end
  return CONF[state] == true
end
local function sentish(state) return RANK[state] >= 2 and not FINAL[state] end
-- Counters are summed here and written once per distinct field at the end: a batch of
-- 500 deliveries touches a handful of counters, not 1,500 HINCRBY calls.
local acc = {}
local function incr(field, n) acc[field] = (acc[field] or 0) + n end
-- Coverage v2 reads what each delivery did from the reach log
-- (`minute|state|unit|id|note`, gateway/coverage/reach.py), appended once per call.
local lines = {}
local function logline(state, unit, id, note)
  if KEYS[4] then
    lines[#lines + 1] = minute .. '|' .. state .. '|' .. unit .. '|' .. id .. '|'
      .. string.gsub(note, '\\n', ' ') .. '\\n'
  end
end
local function count_reach(unit, persons, lang, groups, sent_before, reach_before, state)
  if unit == '' then return end
  local p = tonumber(persons) or 0
  if sentish(state) and not sent_before then
    incr('s|' .. ch .. '|' .. unit .. '|' .. minute, p)
  end
  if reached(state) and not reach_before then
    incr('r|' .. ch .. '|' .. unit .. '|' .. minute, p)
    incr('L|' .. ch .. '|' .. unit .. '|' .. lang, p)
    for g in string.gmatch(groups, '%S+') do
      incr('G|' .. ch .. '|' .. unit .. '|' .. g, p)
    end
  end
end
local changed = 0
for i = 8, #ARGV do
  local f = {}
  for part in string.gmatch(ARGV[i] .. '\\31', '([^\\31]*)\\31') do table.insert(f, part) end
  local id, new = f[1], f[2]
  local unit, persons, lang, groups = f[3] or '', f[4] or '', f[5] or '', f[6] or ''
  local attempts, err = f[7] or '', f[8] or ''
  local cur = redis.call('HGET', KEYS[1], id)
  local c = {}
  if cur then for part in string.gmatch(cur .. '|', '([^|]*)|') do table.insert(c, part) end end
  local cstate, cunit = c[1], c[3] or ''
  if not cur and implicit ~= '' then cstate = implicit end
  if cur and unit == '' then unit, lang, groups = cunit, c[5] or '', c[6] or '' end
  if cur and persons == '' then persons = c[4] or '' end
  if attempts == '' then attempts = c[7] or '' end
  if err == '' then err = c[8] or '' end
  local ok
  if not cstate then ok = true
  elseif FINAL[cstate] or cstate == new then ok = false
  elseif new == 'cancelled' then ok = RANK[cstate] < 2
  elseif FINAL[new] then ok = RANK[cstate] < 3
  else ok = RANK[new] > RANK[cstate] end
  if ok then
    redis.call('HSET', KEYS[1], id, new .. '|' .. now .. '|' .. unit .. '|' .. persons .. '|'
      .. lang .. '|' .. groups .. '|' .. attempts .. '|' .. err)
    incr('n|' .. ch .. '|' .. new, 1)
    if cstate then incr('n|' .. ch .. '|' .. cstate, -1) end
    logline(new, unit, id, err)
    local known = cur and cunit ~= ''
    count_reach(unit, persons, lang, groups, known and sentish(cstate),
                known and reached(cstate), new)
    changed = changed + 1
  elseif cur and cunit == '' and unit ~= '' then
    -- A provider receipt got here before the sender wrote what the delivery stands for.
    redis.call('HSET', KEYS[1], id, cstate .. '|' .. (c[2] or now) .. '|' .. unit .. '|'
      .. persons .. '|' .. lang .. '|' .. groups .. '|' .. attempts .. '|' .. err)
    count_reach(unit, persons, lang, groups, false, false, cstate)
    logline(cstate, unit, id, '')
  end
end
if #lines > 0 then redis.call('APPEND', KEYS[4], table.concat(lines)) end
for field, n in pairs(acc) do
  if n ~= 0 then redis.call('HINCRBY', KEYS[2], field, n) end
end
-- Retention: receipts and the reach log (per recipient) and the counters (what reports
-- need) go a fixed time after the alert's expiry, set once when first written.
-- Counted from the server's clock at the latest (a caller's `now` may be a replayed time).
for _, k in ipairs({1, 2, 4}) do
  if KEYS[k] and redis.call('PTTL', KEYS[k]) == -1 then
    local t = redis.call('TIME')
    local clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local expires = tonumber(redis.call('HGET', KEYS[3], 'expires') or 0) or 0
    local keep = k == 2 and keep_counters or keep_receipts
    redis.call('PEXPIREAT', KEYS[k], math.max(expires, now, clock) + keep)
  end
end
return changed
"""
)

ENQUEUE = """
-- KEYS: set of batches already queued for the alert, agg hash, send stream
-- ARGV: ttl_s, channel, fields per batch (F), then per batch: its dedup id, its
--       recipients, and F field/value pairs for XADD.
-- A planner that crashed before marking its plan done plans again: the batches it
-- queued the first time are not queued (nor counted as queued) a second time.
local ttl, ch, nf = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local added, queued, i = 0, 0, 4
while i <= #ARGV do
  local id, n = ARGV[i], tonumber(ARGV[i + 1])
  if redis.call('SADD', KEYS[1], id) == 1 then
    local fields = {}
    for j = i + 2, i + 1 + 2 * nf do table.insert(fields, ARGV[j]) end
    redis.call('XADD', KEYS[3], '*', unpack(fields))
    added = added + 1
    queued = queued + n
  end
  i = i + 2 + 2 * nf
end
if queued > 0 then redis.call('HINCRBY', KEYS[2], 'n|' .. ch .. '|queued', queued) end
redis.call('EXPIRE', KEYS[1], ttl)
return added
"""

TOUCH = """
-- KEYS: stream; ARGV: group, consumer, entry. Resets the entry's idle time if the
-- consumer still holds it (never takes back an entry another worker took over).
local held = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
if #held == 0 then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""

COUNT_ONCE = """
-- KEYS: set of what was already counted for the alert, agg hash
-- ARGV: ttl_s, marker, then field/increment pairs: applied only the first time.
if redis.call('SADD', KEYS[1], ARGV[2]) == 0 then return 0 end
for i = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

SENT = """
-- KEYS: receipts hash; ARGV[1]: delivery ids joined by U+001F.
-- Returns the ids that already have a receipt beyond `queued` (the sent-set check),
-- joined the same way: one argument in, one string out, whatever the batch size.
local out = {}
for id in string.gmatch(ARGV[1] .. '\\31', '([^\\31]*)\\31') do
  if id ~= '' then
    local v = redis.call('HGET', KEYS[1], id)
    if v and string.sub(v, 1, 7) ~= 'queued|' then table.insert(out, id) end
  end
end
return table.concat(out, '\\31')
"""

TOKENS = """
-- KEYS: bucket; ARGV: rate per s, burst, wanted, now_ms. Returns ms to wait (0: taken).
local rate, burst, want, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local t = tonumber(redis.call('HGET', KEYS[1], 't') or burst)
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or now)
t = math.min(burst, t + math.max(0, now - ts) * rate / 1000)
local wait = 0
if t >= want then t = t - want else wait = math.ceil((want - t) * 1000 / rate) end
redis.call('HSET', KEYS[1], 't', t, 'ts', now)
redis.call('PEXPIRE', KEYS[1], 3600000)
return wait
"""

QUOTA = """
-- KEYS: hour hash; ARGV: limit, ttl_s, addresses... Returns 1 (allowed) or 0 per address.
local limit, out = tonumber(ARGV[1]), {}
for i = 3, #ARGV do
  local n = redis.call('HINCRBY', KEYS[1], ARGV[i], 1)
  if n > limit then redis.call('HINCRBY', KEYS[1], ARGV[i], -1); out[i - 2] = 0
  else out[i - 2] = 1 end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return out
"""

BREAKER = """
-- KEYS: breaker hash; ARGV: now_ms, ok (1/0), window_ms, error_rate, min_calls, cooldown_ms
-- Returns the state after recording: 0 closed, 1 open, 2 half-open.
local now, ok = tonumber(ARGV[1]), ARGV[2] == '1'
local window, rate = tonumber(ARGV[3]), tonumber(ARGV[4])
local min_calls, cooldown = tonumber(ARGV[5]), tonumber(ARGV[6])
local h = KEYS[1]
local start = tonumber(redis.call('HGET', h, 'start') or 0)
local open_until = tonumber(redis.call('HGET', h, 'open_until') or 0)
if open_until > 0 and now >= open_until then
  -- half-open: this call was the probe
  if ok then
    redis.call('HSET', h, 'open_until', 0, 'probe_until', 0, 'start', now, 'ok', 1, 'err', 0)
    return 0
  end
  redis.call('HSET', h, 'open_until', now + cooldown, 'probe_until', 0, 'start', now,
             'ok', 0, 'err', 0)
  return 1
end
if open_until > 0 then return 1 end
if now - start > window then
  redis.call('HSET', h, 'start', now, 'ok', 0, 'err', 0)
end
local okc = redis.call('HINCRBY', h, 'ok', ok and 1 or 0)
local errc = redis.call('HINCRBY', h, 'err', ok and 0 or 1)
redis.call('PEXPIRE', h, 86400000)
if okc + errc >= min_calls and errc / (okc + errc) >= rate then
  redis.call('HSET', h, 'open_until', now + cooldown)
  return 1
end
return 0
"""

PROBE = """
-- KEYS: breaker hash; ARGV: now_ms, probe_ms
-- The state for one caller about to send: 0 closed, 1 open, 2 half-open *and this caller
-- is the one probe* (no other caller is probing; a probe not reported within probe_ms
-- is presumed lost and another may go). Everyone else sees 1 until the probe reports.
local now = tonumber(ARGV[1])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or 0)
if open_until == 0 then return 0 end
if now < open_until then return 1 end
if tonumber(redis.call('HGET', KEYS[1], 'probe_until') or 0) > now then return 1 end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[2]))
return 2
"""
