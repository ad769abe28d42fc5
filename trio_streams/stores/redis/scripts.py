"""The Lua scripts that change shared sessions, each one atomic inside Redis.

Atomicity is the point: an append, its trim and the new ``dropped_prefix`` land together
(so ``dropped_prefix`` is always exact), and a finalize compacts the log, writes its
terminal marker, ``done`` and the expiries together (so no reader can see one without
the other).

Log layout: an append of bytes ending at logical offset ``E`` is the stream entry
``E-0`` with field ``d`` (its bytes; only the last ``max_bytes`` of an oversized append).
Appends are never empty, so ids strictly increase. The terminal marker of a log whose
total is ``T`` is ``T-1`` with field ``end``: greater than every data entry, and it
wakes every blocked ``XREAD``. Its ``end`` value says why the log ended (``done``,
``failed``, ``stopped``, ``replaced``: see ``core/end_reasons.py``), so that readers on
every instance can tell their clients. ``XTRIM MINID (D+1)-0`` removes exactly the entries
that end at or before ``dropped_prefix = D``.

A log whose cap is at least a segment (``keys.SEGMENT_BYTES``) also keeps its bytes in
plain strings ``bytes:<gen>:<n>:C``, appended in the same step as the entries, deleted
once wholly trimmed and given the log's expiry at finalize: a backlog read is one
``GETRANGE``, where walking and joining entries in Lua cost 3 to 5 ms per 256 KiB. A
finalize that finds the segments holding every kept byte drops the entries, so that a
finished log costs its bytes once: only the terminal marker stays, with a ``segments``
field (the offset the segments hold bytes from), and ``RANGE`` reads the segments there.

Every entry is also published on the pub/sub channel named like the log itself: ``d<E>
<bytes>`` for data ending at ``E``, ``e<T> <reason>`` for the terminal marker. Instances
that follow the log subscribe to it (``subscriber.py``) and get its bytes pushed, with no
read of their own; the stream stays the source of truth, read after any gap. A channel without
subscribers costs Redis one lookup.

Every script takes the key prefix as ``ARGV[1]`` (the names are built as in
``keys.py``) and, as ``ARGV[2]``, whether the events a script writes itself (error
events) get SSE ``id:`` lines. Keys are not declared in ``KEYS`` (the log's name depends on the
generation read inside the script), which is fine on a standalone Redis or Valkey but
not on a cluster.
"""

from __future__ import annotations

from trio_streams.stores.redis.keys import SEGMENT_BYTES

_PRELUDE = r"""
local P = ARGV[1]
-- Stamp the events this script writes itself (error events) with SSE ids.
local STAMP = ARGV[2] == '1'
local function meta_key(cid) return P .. 'meta:' .. cid end
local function log_key(cid, gen) return P .. 'log:' .. gen .. ':' .. cid end
local function segment_key(cid, gen, index)
  return P .. 'bytes:' .. gen .. ':' .. string.format('%d', index) .. ':' .. cid
end
local function lease_key(cid) return P .. 'lease:' .. cid end
local function variants_key(base) return P .. 'variants:' .. base end
local function tomb_key(cid) return P .. 'tomb:' .. cid end
local function fmt(n) return string.format('%d', n) end

local function prefixes(cid)
  local out = {}
  local start = 1
  while true do
    local i = string.find(cid, '::', start, true)
    if not i then break end
    table.insert(out, string.sub(cid, 1, i - 1))
    start = i + 2
  end
  return out
end

-- The log's bytes again as plain strings of SEGMENT bytes (keys.py), so that a backlog
-- read is one GETRANGE: no entries to walk, join or convert. A segment only ever holds
-- bytes contiguous from its first offset: after a gap the segment holding it stays
-- unwritten, and its readers read the stream. Logs capped below a segment have none.
local SEGMENT = @SEGMENT_BYTES@
-- APPEND leaves a string up to twice its size allocated (Redis grows it ahead); a full
-- segment, and the last one at finalize, is written again at its exact size.
local function shrink(key)
  local bytes = redis.call('GET', key)
  if bytes then redis.call('SET', key, bytes) end
end
local function append_segments(cid, gen, start, data)
  local size = string.len(data)
  local pos = 1
  while pos <= size do
    local index = math.floor(start / SEGMENT)
    local within = start - index * SEGMENT
    local take = math.min(size - pos + 1, SEGMENT - within)
    local key = segment_key(cid, gen, index)
    if redis.call('STRLEN', key) == within then
      if take == size then
        redis.call('APPEND', key, data)
      else
        redis.call('APPEND', key, string.sub(data, pos, pos + take - 1))
      end
      if within + take == SEGMENT then shrink(key) end
    end
    pos = pos + take
    start = start + take
  end
end

-- Segments wholly before ``dropped`` go with the entries they repeat.
local function trim_segments(cid, gen, before, dropped)
  for index = math.floor(before / SEGMENT), math.floor(dropped / SEGMENT) - 1 do
    redis.call('DEL', segment_key(cid, gen, index))
  end
end

local function expire_segments(cid, gen, dropped, total, ttl)
  if total > 0 then shrink(segment_key(cid, gen, math.floor((total - 1) / SEGMENT))) end
  for index = math.floor(dropped / SEGMENT), math.floor((total - 1) / SEGMENT) do
    redis.call('EXPIRE', segment_key(cid, gen, index), ttl)
  end
end

-- Whether the segments hold every kept byte, from the one holding ``dropped`` on to
-- ``total``: a log with a hole (an append larger than the cap), capped below a segment or
-- older than segments has one short or missing. One STRLEN per segment.
local function segments_whole(cid, gen, dropped, total)
  if total <= dropped then return false end
  local last = math.floor((total - 1) / SEGMENT)
  for index = math.floor(dropped / SEGMENT), last do
    local size = SEGMENT
    if index == last then size = total - index * SEGMENT end
    if redis.call('STRLEN', segment_key(cid, gen, index)) ~= size then return false end
  end
  return true
end

local function append_bytes(meta, cid, gen, total, dropped, data, maxb)
  local log = log_key(cid, gen)
  local size = string.len(data)
  total = total + size
  if size > maxb then data = string.sub(data, size - maxb + 1) end
  redis.call('XADD', log, fmt(total) .. '-0', 'd', data)
  if maxb >= SEGMENT then append_segments(cid, gen, total - string.len(data), data) end
  -- Instances following this log get the bytes pushed (the log stays the truth).
  redis.call('PUBLISH', log, 'd' .. fmt(total) .. ' ' .. data)
  if total - dropped > maxb then
    trim_segments(cid, gen, dropped, total - maxb)
    dropped = total - maxb
    redis.call('XTRIM', log, 'MINID', fmt(dropped + 1) .. '-0')
  end
  redis.call('HSET', meta, 'total', fmt(total), 'dropped', fmt(dropped))
  return total
end

-- A base id's index expires with its last finished variant, never while one is live.
local function expire_indexes(cid, ttl)
  for _, base in ipairs(prefixes(cid)) do
    local key = variants_key(base)
    local live = false
    for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
      local done = redis.call('HGET', meta_key(member), 'done')
      if not done then
        redis.call('ZREM', key, member)
      elseif done == '0' then
        live = true
      end
    end
    if not live then redis.call('EXPIRE', key, ttl) end
  end
end

-- The SSE id of an event is its generation and the logical offset just after it, its own
-- id line included (as trio_streams.core.event_ids writes it):
-- the fixed point of N = at + len(event) + len(id line).
local function stamp_event(event, at, gen)
  local body = string.sub(event, 1, -2)
  local prefix = 'id: ' .. gen .. '-'
  local fixed = at + string.len(body) + string.len(prefix) + 2
  local digits = 1
  while string.len(fmt(fixed + digits)) ~= digits do digits = digits + 1 end
  return body .. prefix .. fmt(fixed + digits) .. '\n\n'
end

-- A finished log rewritten in entries cut at every multiple of COMPACT_BYTES (the
-- readers' chunk): a replay from 0, or from any multiple, then reads one entry per chunk
-- instead of one per token (what a stream at 20 tokens/s leaves). Offsets stay (each
-- entry's id is still the offset after its last byte), and so do gaps.
-- A longer log stays as it is: one script holds Redis for the whole rewrite, about 5 us
-- per entry and 4 ms per MiB (4 MiB in 26,536 token entries: 138 ms; in 3,992: 34 ms),
-- and these bounds keep that near 10 ms.
local COMPACT_BYTES = 262144
local COMPACT_MAX_ENTRIES = 2048
local COMPACT_MAX_BYTES = 1048576
local function compact(log, retained)
  if retained > COMPACT_MAX_BYTES then return end
  local count = redis.call('XLEN', log)
  if count < 2 or count > COMPACT_MAX_ENTRIES then return end
  local entries = redis.call('XRANGE', log, '-', '+')
  local out, parts, size, last = {}, {}, 0, -1
  local function close()
    if size > 0 then
      out[#out + 1] = {last, table.concat(parts)}
      parts, size = {}, 0
    end
  end
  for _, entry in ipairs(entries) do
    local id, data = entry[1], entry[2][2]
    local stop = tonumber(string.sub(id, 1, string.find(id, '-', 1, true) - 1))
    local start = stop - string.len(data)
    if last >= 0 and start ~= last then close() end  -- a gap stays a gap
    while start < stop do
      local boundary = (math.floor(start / COMPACT_BYTES) + 1) * COMPACT_BYTES
      if stop < boundary then
        parts[#parts + 1] = data
        size = size + string.len(data)
        last = stop
        break
      end
      local piece = string.sub(data, 1, boundary - start)
      parts[#parts + 1] = piece
      size = size + string.len(piece)
      last = boundary
      close()
      data = string.sub(data, boundary - start + 1)
      start = boundary
    end
  end
  close()
  redis.call('DEL', log)
  for _, chunk in ipairs(out) do redis.call('XADD', log, fmt(chunk[1]) .. '-0', 'd', chunk[2]) end
end

-- reason: why the log ends (the terminal marker's 'end' field); 'failed' with an error
-- event, 'done' without one, unless given.
local function finalize(cid, gen, now, ttl, error_event, maxb, reason)
  if not reason or reason == '' then
    if error_event ~= '' then reason = 'failed' else reason = 'done' end
  end
  local meta = meta_key(cid)
  local m = redis.call('HMGET', meta, 'gen', 'done', 'total', 'dropped')
  if m[1] ~= gen or m[2] ~= '0' then return 0 end
  local log = log_key(cid, gen)
  local total = tonumber(m[3])
  local dropped = tonumber(m[4])
  if error_event ~= '' then
    if STAMP then error_event = stamp_event(error_event, total, gen) end
    total = append_bytes(meta, cid, gen, total, dropped, error_event, maxb)
    dropped = math.max(dropped, total - maxb)
  end
  if segments_whole(cid, gen, dropped, total) then
    -- The segments hold every kept byte: the entries' copy goes (UNLINK: freed by a
    -- background thread, no string built here), so a finished log costs its bytes once.
    -- The terminal marker stays (its key, expiry and end reason are what readers look
    -- at) and says where the segments' bytes start, for RANGE to serve them from there.
    redis.call('UNLINK', log)
    redis.call('XADD', log, fmt(total) .. '-1', 'end', reason,
               'segments', fmt(math.floor(dropped / SEGMENT) * SEGMENT))
  else
    compact(log, total - dropped)
    redis.call('XADD', log, fmt(total) .. '-1', 'end', reason)
  end
  redis.call('PUBLISH', log, 'e' .. fmt(total) .. ' ' .. reason)
  redis.call('HSET', meta, 'done', '1', 'completed_at', now)
  redis.call('EXPIRE', meta, ttl)
  redis.call('EXPIRE', log, ttl)
  expire_segments(cid, gen, dropped, total, ttl)
  redis.call('DEL', lease_key(cid))
  expire_indexes(cid, ttl)
  return 1
end

-- Finalize with an error event if the producer's instance stopped renewing the lease.
local function finalize_if_orphaned(cid, gen, done, now, ttl, event, maxb)
  if done == '0' and redis.call('EXISTS', lease_key(cid)) == 0 then
    return finalize(cid, gen, now, ttl, event, maxb, 'failed')
  end
  return 0
end
""".replace("@SEGMENT_BYTES@", str(SEGMENT_BYTES))

#: ARGV: prefix, stamp, cid, gen, owner instance, now, lease_ms, ttl, API key owner ('' for
#: none). Returns {old_owner, old_gen} if a live session was replaced (its log got its
#: terminal marker), {'owned'} if the id is another API key's, else {}.
START = (
    _PRELUDE
    + r"""
local cid, gen, owner, now = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local lease_ms, ttl, key = ARGV[7], tonumber(ARGV[8]), ARGV[9]
local meta = meta_key(cid)
local old = redis.call('HMGET', meta, 'gen', 'owner', 'done', 'key')
-- Already applied (the client retried after losing the reply): idempotent.
if old[1] == gen then return {} end
-- The id belongs to a session of another API key: refused.
if old[1] and old[4] ~= key then return {'owned'} end
local replaced = {}
if old[1] and old[3] == '0' then
  finalize(cid, old[1], now, ttl, '', 0, 'replaced')
  replaced = {old[2], old[1]}
end
redis.call('DEL', meta)
redis.call('HSET', meta, 'gen', gen, 'owner', owner, 'total', '0', 'dropped', '0',
           'done', '0', 'started_at', now, 'completed_at', '0', 'key', key)
redis.call('SET', lease_key(cid), gen, 'PX', lease_ms)
local seq = redis.call('INCR', P .. 'seq')
for _, base in ipairs(prefixes(cid)) do
  local key = variants_key(base)
  redis.call('ZADD', key, 'NX', seq, cid)
  redis.call('PERSIST', key)
end
return replaced
"""
)

#: ARGV: prefix, stamp, cid, gen, data, max_bytes, expected_total. Returns the new total, or -1
#: if the session is finalized or no longer this generation (replaced, stopped,
#: expired). Idempotent: if the log already ends at expected_total + len(data), this
#: append was applied before and only its reply was lost (Redis went away), so it
#: is not applied twice.
APPEND = (
    _PRELUDE
    + r"""
local cid, gen = ARGV[3], ARGV[4]
local meta = meta_key(cid)
local m = redis.call('HMGET', meta, 'gen', 'done', 'total', 'dropped')
if m[1] ~= gen or m[2] ~= '0' then return -1 end
local total, expected = tonumber(m[3]), tonumber(ARGV[7])
if total == expected + string.len(ARGV[5]) then return total end
return append_bytes(meta, cid, gen, total, tonumber(m[4]), ARGV[5],
                    tonumber(ARGV[6]))
"""
)

#: ARGV: prefix, stamp, max_bytes, then (cid, gen, expected_total, data) per session:
#: the appends of many sessions in one call, made by this instance's flusher
#: (``outbox.py``). Returns each session's new total, or -1 if that session is finalized,
#: no longer this generation, or does not end at ``expected_total`` (its offsets would no
#: longer be the ones the producer stamped). Idempotent like APPEND: a batch retried after
#: a lost reply changes nothing.
APPEND_MANY = (
    _PRELUDE
    + r"""
local maxb = tonumber(ARGV[3])
local out = {}
for i = 4, #ARGV, 4 do
  local cid, gen, expected, data = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local meta = meta_key(cid)
  local m = redis.call('HMGET', meta, 'gen', 'done', 'total', 'dropped')
  local result = -1
  if m[1] == gen and m[2] == '0' then
    local total = tonumber(m[3])
    if total == expected + string.len(data) then
      result = total
    elseif total == expected then
      result = append_bytes(meta, cid, gen, total, tonumber(m[4]), data, maxb)
    end
  end
  out[#out + 1] = result
end
return out
"""
)

#: ARGV: prefix, stamp, cid, gen, now, ttl, error_event ('' for none), max_bytes, and
#: optionally the end reason (default: 'failed' with an error event, else 'done').
#: Returns 1 if this call finalized the session.
FINALIZE = (
    _PRELUDE
    + r"""
return finalize(ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6]), ARGV[7], tonumber(ARGV[8]),
                ARGV[9])
"""
)

#: ARGV: prefix, stamp, cid, now, ttl, API key owner, generation ('' for any). DELETE:
#: finalize if live, then evict, leaving a tombstone (reason, generation, API key) for the
#: TTL. Returns {owner, gen, was_live}, or {} if there was no session of that API key (or
#: of that generation: checked in the same step, so a newer generation is left alone).
STOP = (
    _PRELUDE
    + r"""
local cid = ARGV[3]
local meta = meta_key(cid)
local m = redis.call('HMGET', meta, 'gen', 'owner', 'done', 'key')
if not m[1] or m[4] ~= ARGV[6] then return {} end  -- none, or another API key's
if ARGV[7] ~= '' and m[1] ~= ARGV[7] then return {} end  -- pinned to another generation
local live = '0'
if m[3] == '0' then
  finalize(cid, m[1], ARGV[4], tonumber(ARGV[5]), '', 0, 'stopped')
  live = '1'
end
redis.call('DEL', meta)
redis.call('DEL', tomb_key(cid))
redis.call('HSET', tomb_key(cid), 'reason', 'stopped', 'gen', m[1], 'key', m[4])
redis.call('EXPIRE', tomb_key(cid), tonumber(ARGV[5]))
for _, base in ipairs(prefixes(cid)) do redis.call('ZREM', variants_key(base), cid) end
return {m[2], m[1], live}
"""
)

#: ARGV: prefix, stamp, lease_ms, then (cid, gen) for every producer of one instance.
#: Renews each one's lease unless its session is no longer that live generation. Returns
#: one 1 (renewed) or 0 (the session moved on: its producer stops) per pair, in order.
RENEW_MANY = (
    _PRELUDE
    + r"""
local out = {}
for i = 4, #ARGV, 2 do
  local cid, gen = ARGV[i], ARGV[i + 1]
  local m = redis.call('HMGET', meta_key(cid), 'gen', 'done')
  if m[1] == gen and m[2] == '0' then
    redis.call('SET', lease_key(cid), gen, 'PX', ARGV[3])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
)

#: ARGV: prefix, stamp, cid, now, ttl, max_bytes, orphan_event. Opens a session for reading,
#: finalizing it first if orphaned. Returns {gen, dropped, API key owner, done, total,
#: tombstone reason, tombstone gen, tombstone API key} (nil where there is none; gen nil
#: when there is no session), or {} if there is neither a session nor a tombstone.
OPEN = (
    _PRELUDE
    + r"""
local cid = ARGV[3]
local meta = meta_key(cid)
local t = redis.call('HMGET', tomb_key(cid), 'reason', 'gen', 'key')
local m = redis.call('HMGET', meta, 'gen', 'done')
if not m[1] then
  if not t[1] then return {} end
  return {false, false, false, false, false, t[1], t[2], t[3]}
end
finalize_if_orphaned(cid, m[1], m[2], ARGV[4], tonumber(ARGV[5]), ARGV[7], tonumber(ARGV[6]))
local v = redis.call('HMGET', meta, 'gen', 'dropped', 'key', 'done', 'total')
return {v[1], v[2], v[3], v[4], v[5], t[1], t[2], t[3]}
"""
)

#: ARGV: prefix, stamp, cid, gen, now, ttl, max_bytes, orphan_event, offset. A reader's check
#: after a lease period without news: finalizes the session if orphaned. Returns 1 if the
#: reader should go on reading, 0 if there is nothing left for it (the log expired, or
#: the session ended at or before its offset).
CHECK = (
    _PRELUDE
    + r"""
local cid, gen = ARGV[3], ARGV[4]
local m = redis.call('HMGET', meta_key(cid), 'gen', 'done', 'total')
if m[1] == gen then
  local orphaned = finalize_if_orphaned(cid, gen, m[2], ARGV[5], tonumber(ARGV[6]), ARGV[8],
                                        tonumber(ARGV[7]))
  if orphaned == 0 and m[2] == '1' and tonumber(m[3]) <= tonumber(ARGV[9]) then return 0 end
  return 1
end
return redis.call('EXISTS', log_key(cid, gen))
"""
)

#: ARGV: prefix, stamp, now, ttl, max_bytes, orphan_event, requested ids... Returns a flat
#: list of (cid, done, total, started_at, completed_at, API key owner, gen, dropped) per
#: session found: each
#: requested id itself, then its variants in creation order, without duplicates.
LOOKUP = (
    _PRELUDE
    + r"""
local now, ttl, maxb, event = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local seen = {}
local out = {}
local function add(cid)
  if seen[cid] then return true end
  local meta = meta_key(cid)
  local m = redis.call('HMGET', meta, 'gen', 'done')
  if not m[1] then return false end
  seen[cid] = true
  finalize_if_orphaned(cid, m[1], m[2], now, ttl, event, maxb)
  local v = redis.call('HMGET', meta, 'done', 'total', 'started_at', 'completed_at', 'key',
                      'gen', 'dropped')
  table.insert(out, cid)
  for i = 1, 7 do table.insert(out, v[i]) end
  return true
end
for i = 7, #ARGV do
  local id = ARGV[i]
  add(id)
  local key = variants_key(id)
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if not add(member) then redis.call('ZREM', key, member) end
  end
end
return out
"""
)

#: A reader's backlog in one reply: the bytes of the log ``KEYS[1]`` from offset
#: ``ARGV[1]`` on, through its contiguous data entries (read at most ``ARGV[2]`` at a
#: time), exactly ``ARGV[3]`` bytes of them at most, as ``{offset of the first byte returned
#: (-1: none; above ARGV[1]: the bytes before it are gone), the bytes, and the end reason
#: if it stopped at the terminal marker}``. Joining and cutting here, not in Python, is what makes a
#: replay fast: one reply per chunk to parse instead of one per token, and no copy of it
#: to slice. A finished log whose segments hold its bytes has no data entries left (its
#: terminal marker says from where the segments hold them): its bytes come from the
#: segments, named ``ARGV[4] .. <n> .. ARGV[5]``, cut the same way. Read-only.
RANGE = r"""
local offset, page, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local SEGMENT = @SEGMENT_BYTES@
-- One whole entry is returned as it is, not copied into a new string.
local function joined(parts)
  if #parts == 1 then return parts[1] end
  return table.concat(parts)
end
-- The bytes from offset (from ``held`` if it is later: those before are gone) to the
-- terminal marker at ``stop``, read from the segments.
local function from_segments(stop, held, reason)
  local first = math.max(offset, held)
  local at, parts, size = first, {}, 0
  while size < most and at < stop do
    local index = math.floor(at / SEGMENT)
    local within = at - index * SEGMENT
    local take = math.min(most - size, stop - at, SEGMENT - within)
    local key = ARGV[4] .. string.format('%d', index) .. ARGV[5]
    local data = redis.call('GETRANGE', key, within, within + take - 1)
    if data == '' then break end  -- expired meanwhile
    parts[#parts + 1] = data
    size = size + string.len(data)
    at = at + string.len(data)
  end
  if size == 0 then return {-1, ''} end
  if at == stop then return {first, joined(parts), reason} end
  return {first, joined(parts)}
end
local parts = {}
local first, last, size = -1, -1, 0
local from = offset + 1
-- Entries hold one token or a whole flushed batch: ask for as many as the bytes still
-- wanted need at the size seen so far (a few at first), never ARGV[2] large ones.
local count = 1
while size < most do
  local first_id = string.format('%d', from) .. '-0'
  local entries = redis.call('XRANGE', KEYS[1], first_id, '+', 'COUNT', count)
  if #entries == 0 then break end
  for _, entry in ipairs(entries) do
    local id = entry[1]
    local dash = string.find(id, '-', 1, true)
    if string.sub(id, dash + 1) ~= '0' then  -- the end, and why
      local fields = entry[2]
      if fields[3] == 'segments' then
        return from_segments(tonumber(string.sub(id, 1, dash - 1)), tonumber(fields[4]), fields[2])
      end
      return {first, joined(parts), fields[2]}
    end
    local data = entry[2][2]
    local stop = tonumber(string.sub(id, 1, dash - 1))
    local start = stop - string.len(data)
    -- A gap: the bytes before this entry are gone (an append larger than the cap).
    if last >= 0 and start ~= last then return {first, joined(parts)} end
    if first < 0 then
      if start < offset then
        data = string.sub(data, offset - start + 1)
        start = offset
      end
      first = start
    end
    if size + string.len(data) > most then data = string.sub(data, 1, most - size) end
    parts[#parts + 1] = data
    last = stop
    size = size + string.len(data)
    if size >= most then break end
  end
  from = last + 1
  if size > 0 then
    count = math.min(page, math.max(1, math.ceil((most - size) * #parts / size) + 1))
  end
end
return {first, joined(parts)}
""".replace("@SEGMENT_BYTES@", str(SEGMENT_BYTES))
