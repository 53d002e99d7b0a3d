-- Anonymous visitors. Every change to a visitor is this one script, so Redis runs them one at a
-- time: two workers creating a visitor for the same stranger at once are serialised, and the
-- second one finds the first one's visitor (the re-check below) instead of creating another.
-- Every key shares the hash tag {visitors}, so the script runs on one node of a Cluster.
--
-- KEYS[1] index: sorted set, visitor id -> last sighting (Unix ms)
-- KEYS[2] log: stream of changes, fields `op` (created | updated | deleted | evicted) and `id`;
--         workers follow it to keep their in-memory index current. Capped by count and trimmed
--         to the TTL, so no trace of a visitor outlives them; workers drop visitors older than
--         the TTL on their own, so expiry needs no entry.
-- KEYS[3] evicted: counter of visitors evicted by the cap
-- ARGV[1] op: resolve | add | left | delete;  ARGV[2] now (ms);  ARGV[3] ttl (s);
-- ARGV[4] key base `<prefix>:{visitors}:`;  ARGV[5] log maxlen;  ARGV[6..] per op.
--
-- Visitor record `<base>v:<id>` (hash, expires ttl after the last write), all strings:
--   model, dim               the recogniser of the embeddings (others' never compare)
--   first_seen, last_seen    Unix ms
--   visits                   tracks of this visitor (one per `t:` field)
--   returns                  tracks that came after one of theirs had left
--   best_q                   quality of the best shot; its JPEG is `<base>shot:<id>` (same TTL)
--   best_match               best similarity a later track matched this visitor with
--   n, e:<i>, q:<i>          embeddings held (packed little-endian f32) and their shots' quality
--   c:<camera>               last sighting at that camera, Unix ms
--   t:<track>                'open:<ms>' or 'left:<ms>' (the arrival, or the `left`, time)

local index, log, evicted = KEYS[1], KEYS[2], KEYS[3]
local op, now, ttl, base, log_maxlen = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]

local function vkey(id) return base .. 'v:' .. id end
local function shotkey(id) return base .. 'shot:' .. id end

local function note(change, id)
  redis.call('XADD', log, 'MAXLEN', '~', log_maxlen, '*', 'op', change, 'id', id)
end

local function drop(id, change)
  redis.call('DEL', vkey(id), shotkey(id))
  redis.call('ZREM', index, id)
  if change then note(change, id) end
end

-- Visitors unseen for longer than the TTL: their records expired already (or are about to);
-- take them out of the index, and the log entries older than the TTL with them. A bounded
-- batch per call.
local function sweep()
  local cutoff = now - ttl * 1000
  local old = redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. cutoff, 'LIMIT', 0, 100)
  for _, id in ipairs(old) do drop(id, nil) end
  redis.call('XTRIM', log, 'MINID', cutoff)
end

-- Cosine of `probe` (a table of `dim` floats, unit length) to the visitor's best embedding, or
-- -2 when the visitor is gone or made by another recogniser. Stored embeddings are unit length.
local function best_cos(id, probe, dim, model)
  local v = vkey(id)
  local head = redis.call('HMGET', v, 'model', 'dim', 'n')
  if head[1] ~= model or tonumber(head[2]) ~= dim then return -2 end
  local best = -2
  for i = 0, (tonumber(head[3]) or 0) - 1 do
    local e = redis.call('HGET', v, 'e:' .. i)
    if e and #e == dim * 4 then
      local s, pos, x = 0, 1, 0
      for k = 1, dim do
        x, pos = struct.unpack('<f', e, pos)
        s = s + x * probe[k]
      end
      if s > best then best = s end
    end
  end
  return best
end

-- Keeps the `maxn` best embeddings: appends while there is room, else replaces the worst if
-- this one is better. An embedding already held (a redelivered shot) is not added twice.
local function keep_embedding(v, emb, q, maxn)
  local n = tonumber(redis.call('HGET', v, 'n') or '0') or 0
  local worst, worst_q = nil, q
  for i = 0, n - 1 do
    if redis.call('HGET', v, 'e:' .. i) == emb then return end
    local qi = tonumber(redis.call('HGET', v, 'q:' .. i) or '0') or 0
    if qi < worst_q then worst, worst_q = i, qi end
  end
  if n < maxn then
    redis.call('HSET', v, 'e:' .. n, emb, 'q:' .. n, q, 'n', n + 1)
  elseif worst then
    redis.call('HSET', v, 'e:' .. worst, emb, 'q:' .. worst, q)
  end
end

-- Common arguments of resolve and add: ARGV[6] visitor id (for resolve: the id to create),
-- [7] track, [8] camera, [9] shot quality, [10] embedding, [11] dim, [12] embeddings kept,
-- [13] best-shot JPEG, [14] model, [15] cap on visitors, [16] cap on tracks per visitor.
local track, camera, quality = ARGV[7], ARGV[8], tonumber(ARGV[9])
local emb, dim, maxn, jpeg, model = ARGV[10], tonumber(ARGV[11]), tonumber(ARGV[12]), ARGV[13], ARGV[14]

local function refresh(id)
  redis.call('EXPIRE', vkey(id), ttl)
  redis.call('EXPIRE', shotkey(id), ttl)
  redis.call('ZADD', index, now, id)
end

-- Adds this sighting to visitor `id`: the track (a new one is a visit, and a return if an
-- earlier track of theirs has left), the camera, the embedding, the best shot.
local function attach(id, score)
  local v = vkey(id)
  local tfield = 't:' .. track
  local status = 'same'
  if not redis.call('HGET', v, tfield) then
    status = 'attached'
    local all = redis.call('HGETALL', v)
    local tracks, oldest, oldest_at = 0, nil, nil
    for i = 1, #all, 2 do
      if string.sub(all[i], 1, 2) == 't:' then
        tracks = tracks + 1
        local state, at = string.match(all[i + 1], '^(%a+):(%d+)$')
        if state == 'left' then
          status = 'returning'
          if not oldest_at or tonumber(at) < oldest_at then oldest, oldest_at = all[i], tonumber(at) end
        end
      end
    end
    -- Bounded: past the cap, the oldest finished visit's field goes (the counts stay).
    if oldest and tracks >= tonumber(ARGV[16]) then redis.call('HDEL', v, oldest) end
    redis.call('HSET', v, tfield, 'open:' .. now)
    redis.call('HINCRBY', v, 'visits', 1)
    if status == 'returning' then redis.call('HINCRBY', v, 'returns', 1) end
  end
  redis.call('HSET', v, 'last_seen', now, 'c:' .. camera, now)
  if score > (tonumber(redis.call('HGET', v, 'best_match') or '0') or 0) then
    redis.call('HSET', v, 'best_match', score)
  end
  keep_embedding(v, emb, quality, maxn)
  if quality > (tonumber(redis.call('HGET', v, 'best_q') or '0') or 0) then
    redis.call('SET', shotkey(id), jpeg)
    redis.call('HSET', v, 'best_q', quality)
  end
  refresh(id)
  note('updated', id)
  return status
end

local function create(id)
  local v = vkey(id)
  redis.call('HSET', v, 'model', model, 'dim', dim, 'first_seen', now, 'last_seen', now,
    'visits', 1, 'returns', 0, 'best_q', quality, 'best_match', 0, 'n', 0,
    'c:' .. camera, now, 't:' .. track, 'open:' .. now)
  keep_embedding(v, emb, quality, maxn)
  redis.call('SET', shotkey(id), jpeg)
  refresh(id)
  note('created', id)
  -- The cap: the least recently seen go first, each counted and announced.
  local over = redis.call('ZCARD', index) - tonumber(ARGV[15])
  if over > 0 then
    local popped = redis.call('ZPOPMIN', index, over)
    for i = 1, #popped, 2 do drop(popped[i], 'evicted') end
    redis.call('INCRBY', evicted, over)
  end
end

if op == 'resolve' then
  -- ARGV[17] log id the caller's index is current to, [18] the caller's best candidate ('' for
  -- none) and [19] its similarity, [20] the threshold.
  sweep()
  local probe, pos = {}, 1
  for k = 1, dim do probe[k], pos = struct.unpack('<f', emb, pos) end
  local threshold = tonumber(ARGV[20])
  local target, score = nil, -2
  local candidate = ARGV[18]
  if candidate ~= '' and redis.call('EXISTS', vkey(candidate)) == 1 then
    target, score = candidate, tonumber(ARGV[19])
  end
  -- The re-check: visitors created or changed since the caller's index was current, which the
  -- caller could not have compared against (another worker's new visitor, a second ago).
  local since = ARGV[17]
  if since == '' then since = '-' else since = '(' .. since end
  local changes = redis.call('XRANGE', log, since, '+', 'COUNT', 256)
  local seen = {}
  for _, entry in ipairs(changes) do
    local f = entry[2]
    local change, id = f[2], f[4]
    if (change == 'created' or change == 'updated') and not seen[id] and id ~= target then
      seen[id] = true
      local s = best_cos(id, probe, dim, model)
      if s >= threshold and s > score then target, score = id, s end
    end
  end
  if target then
    return { target, attach(target, score), tostring(score) }
  end
  create(ARGV[6])
  return { ARGV[6], 'created', '0' }
end

if op == 'add' then
  sweep()
  if redis.call('EXISTS', vkey(ARGV[6])) == 0 then return { ARGV[6], 'missing', '0' } end
  return { ARGV[6], attach(ARGV[6], 0), '0' }
end

if op == 'left' then
  -- ARGV[6] visitor, [7] track, [8] the track's last sighting (ms).
  local v = vkey(ARGV[6])
  if not redis.call('HGET', v, 't:' .. ARGV[7]) then return 0 end
  redis.call('HSET', v, 't:' .. ARGV[7], 'left:' .. ARGV[8])
  if tonumber(ARGV[8]) > (tonumber(redis.call('HGET', v, 'last_seen') or '0') or 0) then
    redis.call('HSET', v, 'last_seen', ARGV[8])
  end
  refresh(ARGV[6])
  note('updated', ARGV[6])
  return 1
end

if op == 'delete' then
  -- ARGV[6] visitor. Returns 1 if it existed.
  local existed = redis.call('EXISTS', vkey(ARGV[6]))
  drop(ARGV[6], 'deleted')
  return existed
end

return redis.error_reply('visitor script: unknown op ' .. tostring(op))
