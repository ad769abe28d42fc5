"""The Lua scripts of the Durable Streams store on Redis, each one atomic inside Redis.

Atomicity is the point: an append's producer check (epoch and sequence), its
``Stream-Seq`` check, the bytes, the producer's new state and the close land together or
not at all, so two instances appending to one stream, or one producer retrying through
another instance, can never interleave between the check and the write.

Layout, for a stream ``N`` (every name starts with the store's key prefix, ``ds:`` after
it, as ``redis_keys.py`` builds them):

- ``ds:meta:N``, a hash: ``cfg`` (the creation settings, compared by an idempotent PUT),
  ``ct`` (content type as created), ``ctn`` (normalized, compared by appends), ``ttl``
  and ``exp`` (``Stream-TTL`` seconds, ``Stream-Expires-At`` as sent, ``exp_ms`` as a
  Unix time in ms), ``closed``, ``seq`` (the last ``Stream-Seq``), ``inc`` (the
  incarnation: a number no other stream of any name had, so a stream deleted and created
  again is told apart), ``gone`` (soft-deleted: forks still refer to it), ``parent`` and
  ``parent_inc`` (a fork's source), ``fork`` (a fork's source, offset and sub-offset as
  requested, compared by an idempotent PUT), and the tuple of the producer that closed
  it (``close_pid``, ``close_epoch``, ``close_seq``).
- ``ds:data:N``, a string: the byte log itself. Byte offsets map directly: ``APPEND``
  returns the new length, ``GETRANGE`` serves a read of any size in one command.
- ``ds:prod:N``, a hash: producer id → ``<epoch> <last seq>``.
- ``ds:forks:N``, a set: the names of the forks made from ``N`` (each checked against
  its ``parent``/``parent_inc`` before it counts: a fork that expired or was deleted and
  created again as another stream no longer holds ``N``).

A fork copies its source's bytes up to the fork point (one ``GETRANGE`` and ``SET`` in
the script): its log is its own from then on, so deleting or expiring the source never
touches what the fork reads. The source is only soft-deleted (``410``) while forks exist,
as the protocol asks; deleting the last fork removes it, and its soft-deleted ancestors
up the chain with it.

Expiry is Redis's own: every write (and every read, for ``Stream-TTL``'s sliding
lifetime) sets ``PEXPIREAT`` on every key of the stream to the same moment, so the keys
vanish together and a script never sees half a stream. ``HEAD`` does not extend it.

Every change is published on ``ds:chan:N`` as ``<inc> <total> <closed>``, or ``<inc>
gone`` for a deletion: each instance's one pub/sub connection brings it to that
instance's waiting readers (``redis_watch.py``).

Every script takes the key prefix as ``ARGV[1]`` and the stream's name as ``ARGV[2]``.
Keys are not declared in ``KEYS`` (forks and cascades reach other streams' keys), which
is fine on a standalone Redis or Valkey but not on a cluster, as for the session store.
"""

from __future__ import annotations

_PRELUDE = r"""
local P = ARGV[1]
local NAME = ARGV[2]
local function meta_key(n) return P .. 'ds:meta:' .. n end
local function data_key(n) return P .. 'ds:data:' .. n end
local function prod_key(n) return P .. 'ds:prod:' .. n end
local function forks_key(n) return P .. 'ds:forks:' .. n end
local function channel(n) return P .. 'ds:chan:' .. n end
local function fmt(n) return string.format('%d', n) end

-- When the stream's keys expire, in ms since the epoch (nil: never), given ``now``.
local function expire_at(meta, now)
  local ttl, at = unpack(redis.call('HMGET', meta, 'ttl', 'exp_ms'))
  if ttl and ttl ~= '' then return now + tonumber(ttl) * 1000 end
  if at and at ~= '' then return tonumber(at) end
  return nil
end

-- A read or a write: the stream lives on for its TTL from now (or until its
-- Expires-At, set again on keys written since).
local function touch(n, now)
  local at = expire_at(meta_key(n), now)
  if not at then return end
  for _, key in ipairs({meta_key(n), data_key(n), prod_key(n), forks_key(n)}) do
    redis.call('PEXPIREAT', key, fmt(at))
  end
end

local function publish(n, inc, total, closed)
  redis.call('PUBLISH', channel(n), inc .. ' ' .. fmt(total) .. ' ' .. closed)
end

local function remove(n)
  redis.call('DEL', meta_key(n), data_key(n), prod_key(n), forks_key(n))
end

-- The forks that still hold ``n`` (incarnation ``inc``): the others leave the set.
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

-- ``n`` is gone for good: its source, if soft-deleted and held by no other fork, goes
-- too, and so on up the chain.
local function release(n, parent, parent_inc)
  while parent and parent ~= '' do
    local meta = meta_key(parent)
    local inc, gone, grand, grand_inc = unpack(redis.call('HMGET', meta, 'inc', 'gone', 'parent', 'parent_inc'))
    if inc ~= parent_inc then return end
    redis.call('SREM', forks_key(parent), n)
    if gone ~= '1' or live_forks(parent, inc) > 0 then return end
    remove(parent)
    n, parent, parent_inc = parent, grand, grand_inc
  end
end
"""

#: Create a stream, or find it created with the same settings (an idempotent PUT).
#: ARGV: prefix, name, cfg, content type, normalized content type, ttl, expires-at,
#: expires-at ms, closed (0/1), initial bytes, now ms, max bytes, fork (the source, offset
#: and sub-offset as requested; '' unless a fork), source name, source incarnation (''
#: any), bytes of the source to copy (-1: all).
#: Returns {'created'|'exists', inc, total, closed, ct, ttl, exp} or {error, ...}.
CREATE = (
    _PRELUDE
    + r"""
local cfg, ct, ctn, ttl, exp, exp_ms, closed, body = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local now, maxb = tonumber(ARGV[11]), tonumber(ARGV[12])
local fork, source, source_inc, copy = ARGV[13], ARGV[14], ARGV[15], tonumber(ARGV[16])
local meta = meta_key(NAME)

local function answer(status, m)
  local inc, mct, mttl, mexp, mclosed = unpack(redis.call('HMGET', m, 'inc', 'ct', 'ttl', 'exp', 'closed'))
  return {status, inc, redis.call('STRLEN', data_key(NAME)), mclosed, mct, mttl, mexp}
end

local found = redis.call('HMGET', meta, 'inc', 'gone', 'cfg', 'fork')
if found[1] then
  if found[2] == '1' then return {'gone'} end
  if found[3] ~= cfg or found[4] ~= fork then return {'conflict'} end
  return answer('exists', meta)
end

local parent_inc = ''
local prefix = ''
if source ~= '' then
  local smeta = meta_key(source)
  local sinc, sgone, sct, sctn, sttl, sexp, sexp_ms = unpack(redis.call('HMGET', smeta, 'inc', 'gone', 'ct', 'ctn', 'ttl', 'exp', 'exp_ms'))
  if not sinc then return {'source_missing'} end
  if sgone == '1' then return {'source_gone'} end
  if source_inc ~= '' and sinc ~= source_inc then return {'source_changed'} end
  if ct == '' then ct, ctn = sct, sctn end
  if ctn ~= sctn then return {'content_type', sct} end
  if ttl == '' and exp == '' then ttl, exp, exp_ms = sttl, sexp, sexp_ms end
  local total = redis.call('STRLEN', data_key(source))
  if copy < 0 then copy = total end
  if copy > total then return {'beyond', fmt(total)} end
  if copy > 0 then prefix = redis.call('GETRANGE', data_key(source), 0, copy - 1) end
  parent_inc = sinc
end
if string.len(prefix) + string.len(body) > maxb then return {'too_large'} end

-- Leftovers of an earlier stream of this name (its keys expire one by one) go first.
remove(NAME)
local inc = fmt(redis.call('INCR', P .. 'ds:incarnations'))
redis.call('HSET', meta, 'cfg', cfg, 'ct', ct, 'ctn', ctn, 'ttl', ttl, 'exp', exp,
  'exp_ms', exp_ms, 'closed', closed, 'seq', '', 'inc', inc, 'gone', '0',
  'parent', source, 'parent_inc', parent_inc, 'fork', fork)
if string.len(prefix) + string.len(body) > 0 then
  redis.call('SET', data_key(NAME), prefix .. body)
end
if source ~= '' then
  redis.call('SADD', forks_key(source), NAME)
  -- The set lives as long as its stream: it gets that stream's expiry.
  local at = redis.call('PEXPIRETIME', meta_key(source))
  if at > 0 then redis.call('PEXPIREAT', forks_key(source), at) end
end
touch(NAME, now)
publish(NAME, inc, string.len(prefix) + string.len(body), closed)
return answer('created', meta)
"""
)

#: Append (and/or close), with the idempotent producer's check and ``Stream-Seq``'s.
#: ARGV: prefix, name, normalized content type ('' none), bytes, close (0/1), producer id
#: ('' none), epoch, seq, Stream-Seq ('' none), has Stream-Seq (0/1), now ms, max bytes.
#: Returns {'ok', inc, total, closed, epoch, seq} or {'duplicate', inc, total, closed,
#: epoch, seq} or {error, ...}.
APPEND = (
    _PRELUDE
    + r"""
local ctn, body, close = ARGV[3], ARGV[4], ARGV[5] == '1'
local pid, epoch, seq = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local stream_seq, has_seq = ARGV[9], ARGV[10] == '1'
local now, maxb = tonumber(ARGV[11]), tonumber(ARGV[12])
local meta = meta_key(NAME)
local inc, gone, closed, sctn, last_seq = unpack(redis.call('HMGET', meta, 'inc', 'gone', 'closed', 'ctn', 'seq'))
if not inc then return {'missing'} end
if gone == '1' then return {'gone'} end
local data = data_key(NAME)
local total = redis.call('STRLEN', data)

-- Byte-wise order (Lua's < follows the server's locale).
local function after(a, b)
  local n = math.min(string.len(a), string.len(b))
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return string.len(a) > string.len(b)
end

if pid ~= '' then
  -- The producer state machine of trio_streams.core.durable.producers.decide.
  local state = redis.call('HGET', prod_key(NAME), pid)
  if not state then
    if seq ~= 0 then return {'gap', '0', fmt(total), closed} end
  else
    local sp = string.find(state, ' ', 1, true)
    local known_epoch = tonumber(string.sub(state, 1, sp - 1))
    local known_seq = tonumber(string.sub(state, sp + 1))
    if epoch < known_epoch then return {'stale_epoch', fmt(known_epoch), fmt(total), closed} end
    if epoch > known_epoch then
      if seq ~= 0 then return {'epoch_seq', fmt(known_epoch), fmt(total), closed} end
    elseif seq <= known_seq then
      return {'duplicate', inc, fmt(total), closed, fmt(known_epoch), fmt(known_seq)}
    elseif seq ~= known_seq + 1 then
      return {'gap', fmt(known_seq + 1), fmt(total), closed}
    end
  end
end

if closed == '1' then
  if string.len(body) == 0 and close and pid == '' then
    return {'ok', inc, fmt(total), '1', '', ''}  -- closing a closed stream: nothing to do
  end
  return {'closed', '', fmt(total), '1'}
end
if string.len(body) > 0 and ctn ~= sctn then return {'content_type', sctn, fmt(total), closed} end
if has_seq and last_seq ~= '' and not after(stream_seq, last_seq) then
  return {'seq_conflict', last_seq, fmt(total), closed}
end
if total + string.len(body) > maxb then return {'too_large', fmt(maxb), fmt(total), closed} end

if string.len(body) > 0 then total = redis.call('APPEND', data, body) end
if has_seq then redis.call('HSET', meta, 'seq', stream_seq) end
if pid ~= '' then redis.call('HSET', prod_key(NAME), pid, fmt(epoch) .. ' ' .. fmt(seq)) end
if close then
  closed = '1'
  redis.call('HSET', meta, 'closed', '1', 'close_pid', pid, 'close_epoch', ARGV[7], 'close_seq', ARGV[8])
end
touch(NAME, now)
publish(NAME, inc, total, closed)
if pid == '' then return {'ok', inc, fmt(total), closed, '', ''} end
return {'ok', inc, fmt(total), closed, fmt(epoch), fmt(seq)}
"""
)

#: Read bytes from an offset (and extend a Stream-TTL's lifetime when asked).
#: ARGV: prefix, name, offset (-1: the tail), most bytes, now ms, touch (0/1).
#: Returns {'ok', inc, total, closed, ct, bytes, ttl, exp} or {'missing'|'gone'} or
#: {'beyond', total}.
READ = (
    _PRELUDE
    + r"""
local offset, most, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local meta = meta_key(NAME)
local inc, gone, closed, ct, ttl, exp = unpack(redis.call('HMGET', meta, 'inc', 'gone', 'closed', 'ct', 'ttl', 'exp'))
if not inc then return {'missing'} end
if gone == '1' then return {'gone'} end
local data = data_key(NAME)
local total = redis.call('STRLEN', data)
if offset < 0 then offset = total end
if offset > total then return {'beyond', fmt(total)} end
local bytes = ''
if offset < total and most > 0 then bytes = redis.call('GETRANGE', data, offset, offset + most - 1) end
if ARGV[6] == '1' then touch(NAME, now) end
return {'ok', inc, fmt(total), closed, ct, bytes, ttl, exp}
"""
)

#: Delete a stream: for good, or soft (``gone``) while forks still hold it.
#: ARGV: prefix, name. Returns {'deleted'|'soft'|'missing'|'gone'}.
DELETE = (
    _PRELUDE
    + r"""
local meta = meta_key(NAME)
local inc, gone, parent, parent_inc = unpack(redis.call('HMGET', meta, 'inc', 'gone', 'parent', 'parent_inc'))
if not inc then return {'missing'} end
if gone == '1' then return {'gone'} end
redis.call('PUBLISH', channel(NAME), inc .. ' gone')
if live_forks(NAME, inc) > 0 then
  -- Forks copied what they read: only the name stays taken, and answers 410.
  redis.call('HSET', meta, 'gone', '1')
  redis.call('DEL', data_key(NAME), prod_key(NAME))
  return {'soft'}
end
remove(NAME)
release(NAME, parent, parent_inc)
return {'deleted'}
"""
)
