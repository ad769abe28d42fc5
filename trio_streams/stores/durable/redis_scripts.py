"""The Lua scripts of the Durable Streams store on Redis, each one atomic inside Redis.

Atomicity is the point: an append's checks (closure, content type, the idempotent
producer's epoch and sequence, ``Stream-Seq``, the size limit), its bytes, the producer's
new state and the close land together or not at all, so two instances appending to one
stream, or a producer retrying through another instance, never interleave between a
check and the write. The rules are those of
:func:`trio_streams.core.durable.appends.plan_append`, in its order; the store-level
tests run the same requests through both stores and compare the answers.

Layout, for a stream ``N`` (every name starts with the store's key prefix, then ``ds:``):

- ``ds:meta:N``, a hash: ``owner``, ``ct`` (content type as created), ``ctn``
  (normalized), ``json`` (a JSON-mode stream), ``ttl`` and ``exp`` (``Stream-TTL``
  seconds and ``Stream-Expires-At`` as sent), ``dl`` (the deadline, ms on Redis's clock;
  a TTL slides it), ``closed``, ``seq`` (the last ``Stream-Seq``), ``inc`` (the
  incarnation: a number no other stream of any name had, so a stream deleted and created
  again is told apart), ``gone`` (soft-deleted), ``parent``/``parent_inc``/``fork_pos``
  (a fork's source and fork position), ``cpid``/``cepoch``/``cseq`` (the producer request
  that closed it).
- ``ds:data:N``, a string: the byte log. Positions map directly: ``APPEND`` returns the
  new length, ``GETRANGE`` serves a read of any size in one command.
- ``ds:starts:N``, a string of 8-byte big-endian positions: where each append starts
  (what a fork's ``Stream-Fork-Sub-Offset`` counts into).
- ``ds:prod:N``, a hash: producer id → ``<epoch> <last seq>``.
- ``ds:forks:N``, a set: the forks made from ``N``; each counts only while its meta still
  names ``N`` and its incarnation (a fork that expired, or whose name was reused, does not).

A fork copies its source's bytes (and append starts) below the fork position in the
script that creates it: its log is its own from then on, and a read is one ``GETRANGE``
whatever the chain. The source is held while forks exist, as the protocol asks: deleting
or expiring it soft-deletes it (``410``, its name not reusable; its bytes are dropped,
the forks have theirs), and when its last fork goes it goes too, with its soft-deleted
ancestors up the chain.

Expiry: the deadline ``dl`` is checked by every script (an expired stream is gone at once
for every operation), and Redis expires the keys themselves at the same moment
(``PEXPIREAT`` on every key, set again whenever a TTL slides), so nothing is left to
collect. A held source's keys are kept (``PERSIST``) and the set ``ds:held`` lists it:
the store's collector checks those (``SWEEP``), since a fork can expire without a word.

Time is Redis's (``TIME``), the same for every instance.

Every change is published on ``ds:chan:N``: ``<inc> <tail> <closed>`` (then a space and
the bytes, after an append), or ``<inc> gone`` when the stream is deleted or expires;
each instance's one pub/sub connection brings it to that instance's waiting readers
(``redis_watch.py``).

Every script takes the key prefix as ``ARGV[1]``, the stream's name as ``ARGV[2]`` and
the request's owner (``''``: none) as ``ARGV[3]``. Keys are not declared in ``KEYS``
(forks and cascades reach other streams' keys), which is fine on a standalone Redis or
Valkey but not on a cluster, as for the session store.
"""

from __future__ import annotations

_PRELUDE = r"""
local P = ARGV[1]
local NAME = ARGV[2]
local OWNER = ARGV[3]
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local HELD = P .. 'ds:held'

local function meta_key(n) return P .. 'ds:meta:' .. n end
local function data_key(n) return P .. 'ds:data:' .. n end
local function starts_key(n) return P .. 'ds:starts:' .. n end
local function prod_key(n) return P .. 'ds:prod:' .. n end
local function forks_key(n) return P .. 'ds:forks:' .. n end
local function channel(n) return P .. 'ds:chan:' .. n end
local function keys_of(n)
  return {meta_key(n), data_key(n), starts_key(n), prod_key(n), forks_key(n)}
end
local function fmt(n) return string.format('%d', n) end

local FIELDS = {'owner', 'ct', 'ctn', 'json', 'ttl', 'exp', 'dl', 'closed', 'seq', 'inc',
  'gone', 'parent', 'parent_inc', 'fork_pos', 'cpid', 'cepoch', 'cseq'}

local function load(n)
  local values = redis.call('HMGET', meta_key(n), unpack(FIELDS))
  if not values[10] then return nil end
  local m = {}
  for i, field in ipairs(FIELDS) do m[field] = values[i] or '' end
  return m
end

local function tail_of(n) return redis.call('STRLEN', data_key(n)) end

-- What every answer says about a stream: content type, tail, closed, ttl, expires-at,
-- source, fork position, incarnation.
local function describe(n, m)
  return {m.ct, fmt(tail_of(n)), m.closed, m.ttl, m.exp, m.parent, m.fork_pos, m.inc}
end

-- ``appended``: the bytes an append just wrote (the readers' watches keep the tail).
local function publish(n, m, appended)
  local message = m.inc .. ' ' .. fmt(tail_of(n)) .. ' ' .. m.closed
  if appended and string.len(appended) > 0 then message = message .. ' ' .. appended end
  redis.call('PUBLISH', channel(n), message)
end

-- The forks that still hold ``n`` (incarnation ``inc``); the others leave its set.
local function live_forks(n, inc)
  local key = forks_key(n)
  local count = 0
  for _, fork in ipairs(redis.call('SMEMBERS', key)) do
    local parent, parent_inc = unpack(redis.call('HMGET', meta_key(fork), 'parent', 'parent_inc'))
    if parent == n and parent_inc == inc then
      count = count + 1
    else
      redis.call('SREM', key, fork)
    end
  end
  return count
end

-- Redis expires the keys at the deadline, unless forks hold the stream.
local function apply_expiry(n, m)
  if redis.call('SCARD', forks_key(n)) > 0 then
    for _, key in ipairs(keys_of(n)) do redis.call('PERSIST', key) end
  elseif m.dl ~= '' then
    for _, key in ipairs(keys_of(n)) do redis.call('PEXPIREAT', key, m.dl) end
  end
end

-- An access: a TTL slides (an absolute expiry stays).
local function touch(n, m)
  if m.ttl ~= '' then
    m.dl = fmt(NOW + tonumber(m.ttl) * 1000)
    redis.call('HSET', meta_key(n), 'dl', m.dl)
  end
  apply_expiry(n, m)
end

local function expired(m) return m.dl ~= '' and NOW >= tonumber(m.dl) end

local remove

-- ``child`` no longer holds ``parent``: a soft-deleted (or expired) source held by no
-- other fork goes, and so on up the chain; one still alive expires as usual again.
local function release(child, parent, parent_inc)
  while parent ~= '' do
    local pm = load(parent)
    if not pm or pm.inc ~= parent_inc then return end
    redis.call('SREM', forks_key(parent), child)
    if live_forks(parent, pm.inc) > 0 then return end
    redis.call('ZREM', HELD, parent)
    if pm.gone ~= '1' and not expired(pm) then
      apply_expiry(parent, pm)
      return
    end
    redis.call('DEL', unpack(keys_of(parent)))
    if pm.gone ~= '1' then redis.call('PUBLISH', channel(parent), pm.inc .. ' gone') end
    child, parent, parent_inc = parent, pm.parent, pm.parent_inc
  end
end

-- Gone for good (and its source released).
remove = function(n, m)
  redis.call('DEL', unpack(keys_of(n)))
  redis.call('ZREM', HELD, n)
  if m.gone ~= '1' then redis.call('PUBLISH', channel(n), m.inc .. ' gone') end
  release(n, m.parent, m.parent_inc)
end

-- Deleted or expired: soft while forks hold it (they copied its bytes: only its name
-- stays, answering 410), else for good.
local function retire(n, m)
  if live_forks(n, m.inc) > 0 then
    redis.call('HSET', meta_key(n), 'gone', '1')
    redis.call('DEL', data_key(n), starts_key(n), prod_key(n))
    redis.call('PUBLISH', channel(n), m.inc .. ' gone')
    m.gone = '1'
    return
  end
  remove(n, m)
end

-- The stream as the request sees it: nil and 'missing' (none, expired, another
-- owner's), m and 'gone' (soft-deleted), or m and 'live'.
local function state(n, owner)
  local m = load(n)
  if not m then return nil, 'missing' end
  if m.gone ~= '1' and expired(m) then
    retire(n, m)
    if m.gone ~= '1' then return nil, 'missing' end
  end
  if owner ~= nil and m.owner ~= owner then return nil, 'missing' end
  if m.gone == '1' then return m, 'gone' end
  return m, 'live'
end

local function start_at(n, index)
  return (struct.unpack('>I8', redis.call('GETRANGE', starts_key(n), index * 8, index * 8 + 7)))
end

-- The index of the first append starting at or after ``position``, and the count.
local function first_start(n, position)
  local count = redis.call('STRLEN', starts_key(n)) / 8
  local lo, hi = 0, count
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if start_at(n, mid) < position then lo = mid + 1 else hi = mid end
  end
  return lo, count
end

local function write(n, body)
  if string.len(body) == 0 then return tail_of(n) end
  redis.call('APPEND', starts_key(n), struct.pack('>I8', tail_of(n)))
  return redis.call('APPEND', data_key(n), body)
end

local function new_incarnation() return fmt(redis.call('INCR', P .. 'ds:incarnations')) end

-- A reply: ``status``, then what every answer says about the stream.
local function answer(status, n, m)
  local reply = describe(n, m)
  table.insert(reply, 1, status)
  return reply
end

-- A PUT of ``n`` whose stream would hold ``size`` bytes: the reply if it cannot create
-- it (a stream is there: 'exists', for the caller to compare configurations, or a
-- conflict; or the body is bad or too large), else nil, the leftovers of an earlier
-- stream of that name cleared.
local function refuse_put(n, bad, size, maxb)
  local m, status = state(n, nil)
  if m then
    if status == 'gone' then return {'conflict_gone'} end
    if m.owner ~= OWNER then return {'conflict_owner'} end
    return answer('exists', n, m)
  end
  if bad then return {'bad_body'} end
  if size > maxb then return {'too_large'} end
  redis.call('DEL', unpack(keys_of(n)))
  return nil
end

-- Create ``n`` (its log may hold a fork's inherited bytes already), ``config`` being
-- the meta fields of its kind, expiring after ``ttl`` seconds or at ``exp_ms``; write
-- ``body`` and announce it. Returns its meta.
local function create_stream(n, config, ttl, exp_ms, body)
  local dl = exp_ms
  if ttl ~= '' then dl = fmt(NOW + tonumber(ttl) * 1000) end
  redis.call('HSET', meta_key(n), 'owner', OWNER, 'ttl', ttl, 'dl', dl, 'seq', '',
    'inc', new_incarnation(), 'gone', '0', 'cpid', '', 'cepoch', '', 'cseq', '', unpack(config))
  write(n, body)
  local m = load(n)
  apply_expiry(n, m)
  publish(n, m)
  return m
end
"""

#: The request's stream, live: ``m`` its meta (else the script answers 'missing' or
#: 'gone').
_LIVE = r"""
local m, status = state(NAME, OWNER)
if status ~= 'live' then return {status} end
"""

#: PUT: create a stream, unless one exists (then it is described, and the caller decides
#: whether it is the same configuration).
#: ARGV: prefix, name, owner, ct, normalized ct, json (0/1), ttl, expires-at, expires-at
#: ms, closed (0/1), framed body, body invalid (0/1), max bytes.
#: Returns {'created'|'exists', meta…}, {'conflict_gone'}, {'conflict_owner'},
#: {'bad_body'}, {'too_large'}.
CREATE = (
    _PRELUDE
    + r"""
local ct, ctn, json, ttl = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local exp, exp_ms, closed, body = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local bad, maxb = ARGV[12] == '1', tonumber(ARGV[13])
local refusal = refuse_put(NAME, bad, string.len(body), maxb)
if refusal then return refusal end
local m = create_stream(NAME, {'ct', ct, 'ctn', ctn, 'json', json, 'exp', exp, 'closed', closed,
  'parent', '', 'parent_inc', '', 'fork_pos', ''}, ttl, exp_ms, body)
return answer('created', NAME, m)
"""
)

#: The first step of a fork: the source as it is, and the append at a position (for a
#: sub-offset). ARGV: prefix, name (the source), owner, position (-1: the tail), want the
#: append (0/1). Returns {'ok', meta…, json, append or false} or {'missing'|'gone'}.
SOURCE = (
    _PRELUDE
    + _LIVE
    + r"""
local position, want = tonumber(ARGV[4]), ARGV[5] == '1'
local tail = tail_of(NAME)
if position < 0 then position = tail end
local append = false
if want and position <= tail then
  local index, count = first_start(NAME, position)
  if index < count and start_at(NAME, index) == position then
    local stop = tail
    if index + 1 < count then stop = start_at(NAME, index + 1) end
    append = redis.call('GETRANGE', data_key(NAME), position, stop - 1)
  end
end
local reply = answer('ok', NAME, m)
table.insert(reply, m.json)
table.insert(reply, append)
return reply
"""
)

#: The second step of a fork: create ``name`` from the source's bytes below ``position``.
#: ARGV: prefix, name, owner, source, source incarnation, position, ct, normalized ct,
#: json, ttl, expires-at, expires-at ms, closed, framed body, body invalid, max bytes,
#: inherit the source's expiry (0/1).
#: Returns as CREATE, or {'source_missing'|'source_gone'|'source_changed'}.
FORK = (
    _PRELUDE
    + r"""
local source, source_inc, position = ARGV[4], ARGV[5], tonumber(ARGV[6])
local ct, ctn, json, ttl = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local exp, exp_ms, closed, body = ARGV[11], ARGV[12], ARGV[13], ARGV[14]
local bad, maxb, inherit = ARGV[15] == '1', tonumber(ARGV[16]), ARGV[17] == '1'
local sm, sstatus = state(source, OWNER)
if sstatus == 'missing' then return {'source_missing'} end
if sstatus == 'gone' then return {'source_gone'} end
if sm.inc ~= source_inc then return {'source_changed'} end
if inherit then
  ttl, exp, exp_ms = sm.ttl, sm.exp, ''
  if exp ~= '' then exp_ms = sm.dl end
end
local refusal = refuse_put(NAME, bad, position + string.len(body), maxb)
if refusal then return refusal end
if position > 0 then
  redis.call('SET', data_key(NAME), redis.call('GETRANGE', data_key(source), 0, position - 1))
  local index = first_start(source, position)
  if index > 0 then
    local starts = redis.call('GETRANGE', starts_key(source), 0, index * 8 - 1)
    redis.call('SET', starts_key(NAME), starts)
  end
end
local m = create_stream(NAME, {'ct', ct, 'ctn', ctn, 'json', json, 'exp', exp, 'closed', closed,
  'parent', source, 'parent_inc', sm.inc, 'fork_pos', fmt(position)}, ttl, exp_ms, body)
redis.call('SADD', forks_key(source), NAME)
redis.call('ZADD', HELD, 'NX', 0, source)
apply_expiry(source, sm)
return answer('created', NAME, m)
"""
)

#: An idempotent PUT met its stream: slide its TTL. ARGV: prefix, name, owner.
TOUCH = (
    _PRELUDE
    + r"""
local m, status = state(NAME, OWNER)
if status == 'live' then touch(NAME, m) end
return status
"""
)

#: POST: append and/or close, decided as ``plan_append`` decides.
#: ARGV: prefix, name, owner, framed body, body state ('none': no body, 'ok',
#: 'missing_ct': no content type, 'bad': not framable),
#: normalized request ct, close (0/1), producer id ('' none), epoch, seq, Stream-Seq,
#: has Stream-Seq (0/1), max bytes.
#: Returns {'ok', status, tail, closed, epoch or '', seq or ''}, {'missing'|'gone'}, or
#: {'refused', meta…, producer epoch, producer seq, 's'..last Stream-Seq, closing producer
#: id, epoch, seq} (the state it was refused on).
APPEND = (
    _PRELUDE
    + _LIVE
    + r"""
local body, body_state, ctn, close = ARGV[4], ARGV[5], ARGV[6], ARGV[7] == '1'
local pid, epoch_text, seq_text = ARGV[8], ARGV[9], ARGV[10]
local stream_seq, has_seq, maxb = ARGV[11], ARGV[12] == '1', tonumber(ARGV[13])
local epoch, seq = tonumber(epoch_text), tonumber(seq_text)
local tail = tail_of(NAME)
local has_data = body_state ~= 'none'

local producer = false
if pid ~= '' then
  local known = redis.call('HGET', prod_key(NAME), pid)
  if known then
    local space = string.find(known, ' ', 1, true)
    producer = {tonumber(string.sub(known, 1, space - 1)), tonumber(string.sub(known, space + 1))}
  end
end

-- Byte-wise order (Lua's own follows the server's locale).
local function above(a, b)
  local n = math.min(string.len(a), string.len(b))
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return string.len(a) > string.len(b)
end

local function done(result, new_tail, closed, answered_seq)
  touch(NAME, m)
  if pid == '' then return {'ok', result, fmt(new_tail), closed, '', ''} end
  return {'ok', result, fmt(new_tail), closed, epoch_text, answered_seq}
end

-- A refusal: the state it was decided on, for plan_append to name the error.
local function refuse()
  local reply = answer('refused', NAME, m)
  local pe, ps = '', ''
  if producer then pe, ps = fmt(producer[1]), fmt(producer[2]) end
  for _, value in ipairs({pe, ps, m.seq, m.cpid, m.cepoch, m.cseq}) do
    table.insert(reply, value)
  end
  return reply
end

if m.closed == '1' then
  if pid ~= '' and m.cpid == pid and m.cepoch == epoch_text and m.cseq == seq_text then
    return done('duplicate', tail, '1', seq_text)
  end
  if not has_data and pid == '' then return done('closed', tail, '1', '') end
  return refuse()  -- a stale epoch (403), or closed (409)
end
if has_data then
  if body_state ~= 'ok' or ctn ~= m.ctn then return refuse() end
elseif not close then
  return refuse()
end
local new_state = false
if pid ~= '' then
  -- trio_streams.core.durable.producers.decide
  if not producer then
    if seq ~= 0 then return refuse() end
    new_state = fmt(epoch) .. ' 0'
  elseif epoch < producer[1] then
    return refuse()
  elseif epoch > producer[1] then
    if seq ~= 0 then return refuse() end
    new_state = fmt(epoch) .. ' 0'
  elseif seq <= producer[2] then
    return done('duplicate', tail, '0', fmt(producer[2]))
  elseif seq == producer[2] + 1 then
    new_state = fmt(epoch) .. ' ' .. fmt(seq)
  else
    return refuse()
  end
end
-- 'seq' is '' before any Stream-Seq, else 's' and the last one.
if has_seq and m.seq ~= '' and not above(stream_seq, string.sub(m.seq, 2)) then return refuse() end
if tail + string.len(body) > maxb then return refuse() end

tail = write(NAME, body)
if new_state then redis.call('HSET', prod_key(NAME), pid, new_state) end
if has_seq and string.len(body) > 0 then
  redis.call('HSET', meta_key(NAME), 'seq', 's' .. stream_seq)
end
local closed = '0'
if close then
  closed = '1'
  m.closed = '1'
  redis.call('HSET', meta_key(NAME), 'closed', '1',
    'cpid', pid, 'cepoch', epoch_text, 'cseq', seq_text)
end
publish(NAME, m, body)
local result = 'closed'
if string.len(body) > 0 then result = 'appended' end
return done(result, tail, closed, seq_text)
"""
)

#: GET: bytes from a position (and a TTL slides). ARGV: prefix, name, owner, position
#: (-1: the tail), most bytes (-1: to the tail; JSON streams always read to the tail).
#: Returns {'ok', start, bytes, meta…}, {'missing'|'gone'}, or {'beyond'}.
READ = (
    _PRELUDE
    + _LIVE
    + r"""
local position, most = tonumber(ARGV[4]), tonumber(ARGV[5])
touch(NAME, m)
local tail = tail_of(NAME)
if position < 0 then position = tail end
if position > tail then return {'beyond'} end
local stop = tail
if most >= 0 and m.json ~= '1' then stop = math.min(tail, position + most) end
local bytes = ''
if stop > position then bytes = redis.call('GETRANGE', data_key(NAME), position, stop - 1) end
local reply = answer('ok', NAME, m)
table.insert(reply, 2, fmt(position))
table.insert(reply, 3, bytes)
return reply
"""
)

#: HEAD (and a waiting reader's check): the stream, no TTL slid.
#: ARGV: prefix, name, owner. Returns {'ok', meta…} or {'missing'|'gone'}.
HEAD = (
    _PRELUDE
    + _LIVE
    + r"""
return answer('ok', NAME, m)
"""
)

#: DELETE: for good, or soft while forks hold the stream. ARGV: prefix, name, owner.
#: Returns {'deleted'} or {'missing'|'gone'}.
DELETE = (
    _PRELUDE
    + _LIVE
    + r"""
if live_forks(NAME, m.inc) > 0 then redis.call('ZADD', HELD, 'NX', 0, NAME) end
retire(NAME, m)
return {'deleted'}
"""
)

#: The collector: the held sources (``ds:held``, scored by when they were last checked),
#: the longest unchecked first: an expired one is retired, one whose forks are all gone
#: released. ARGV: prefix, '', '', most to check. Returns {checked, held before}.
SWEEP = (
    _PRELUDE
    + r"""
local most = tonumber(ARGV[4])
local held = redis.call('ZCARD', HELD)
local names = redis.call('ZRANGE', HELD, 0, most - 1)
for _, n in ipairs(names) do
  local m = state(n, nil)
  if not m then
    redis.call('ZREM', HELD, n)
  elseif live_forks(n, m.inc) == 0 then
    redis.call('ZREM', HELD, n)
    if m.gone == '1' then remove(n, m) else apply_expiry(n, m) end
  else
    redis.call('ZADD', HELD, NOW, n)
  end
end
return {#names, held}
"""
)
