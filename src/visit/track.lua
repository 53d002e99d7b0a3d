-- The track record: one hash per face track, KEYS[1] = <prefix>:{<group>}:track:<track_id>.
-- Every operation on it is this one script, so Redis runs them one at a time: two workers folding
-- shots of one track at once are serialised, and the first decision is announced exactly once.
--
-- ARGV[1] op: fold | failed | end | published | visitor;  ARGV[2] now (ms);  ARGV[3] ttl (s);
-- ARGV[4] track id;  ARGV[5] group;  ARGV[6..] per op (see src/visit/record.rs).
--
-- Reply: { status, visitor, json_1, published_1, json_2, published_2, ... } where status is
-- ok | duplicate | missing, visitor is the track's anonymous visitor id ('' for none), and each
-- json is an announcement this call (or, for a duplicate, the first call with the same shot id)
-- made.
--
-- Record fields (all strings):
--   sent, camera, group, first_seen      set by send_shot (a separate script)
--   folded                               shots folded (voted, or failed)
--   shot:<stream id>                     comma list of announcements that shot made ('' = none)
--   vote:unknown, vote:p:<person id>     total vote weight, integer thousandths
--   pname:<person id>                    the person's name, for the announcement
--   decided, person ('' = unknown), person_name, score, md5, bbox, capture_ts, model
--                                        the decided identity and the shot that decided it
--   updates                              how many `updated` announcements so far
--   ended, last_seen, faces_seen         set by end_track
--   visitor, visitor_known               the track's anonymous visitor (set once, by the worker
--                                        that resolved it) and whether it is announced for a
--                                        known person too ([visitors] for_known)
--   ann:<name>                           announcement JSON: arrived | updated:<n> | left
--   pub:<name>                           '1' once that announcement is in the events stream

local key = KEYS[1]
local op, now, ttl, track, group = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local function get(field)
  return redis.call('HGET', key, field)
end

local function int(field)
  return tonumber(get(field) or '0') or 0
end

-- Only send_shot creates a record. A fold for a record that is gone (expired, or never sent)
-- does not recreate it: it would lack camera and first_seen and hold data with no owner.
if not get('sent') then
  return { 'missing' }
end

local function reply(status, names)
  local out = { status, get('visitor') or '' }
  for _, name in ipairs(names) do
    local json = get('ann:' .. name)
    if json then
      out[#out + 1] = json
      out[#out + 1] = redis.call('HEXISTS', key, 'pub:' .. name)
    end
  end
  return out
end

local function split(list)
  local names = {}
  for name in string.gmatch(list, '[^,]+') do
    names[#names + 1] = name
  end
  return names
end

-- Stores the announcement `name` as the record stands now and returns its name.
local function announce(kind, name)
  local a = {
    kind = kind, name = name, track = track, camera = get('camera') or '',
    group = get('group') or group, first_seen = get('first_seen') or '0', event_ts = now,
    decided = get('decided') or '0',
  }
  if a.decided == '1' then
    a.person = get('person') or ''
    a.person_name = get('person_name') or ''
    a.score = get('score') or '0'
    a.md5 = get('md5') or ''
    a.bbox = get('bbox') or ''
    a.model = get('model') or ''
  end
  -- The visitor goes with unknowns, and with people only when it was asked for.
  local visitor = get('visitor')
  if visitor and (a.decided ~= '1' or a.person == '' or get('visitor_known') == '1') then
    a.visitor = visitor
  end
  if kind == 'left' then
    a.last_seen = get('last_seen') or '0'
    a.faces_seen = get('faces_seen') or '0'
    a.shots = get('folded') or '0'
  end
  redis.call('HSET', key, 'ann:' .. name, cjson.encode(a))
  return name
end

-- `left` is due once the track has ended and every shot sent has been folded; whichever call
-- makes that true announces it, and only once.
local function left_due(names)
  if get('ended') == '1' and not get('ann:left') and int('folded') >= int('sent') then
    names[#names + 1] = announce('left', 'left')
  end
end

-- Adds this shot's weighted vote and decides. ARGV[7..18]: person id ('' = unknown), name,
-- score, face px, md5, bbox, capture ts, model, full_weight_px, min_size_factor,
-- unknown_weight, switch_margin.
local function vote(names)
  local pid, pname = ARGV[7], ARGV[8]
  local score = tonumber(ARGV[9]) or 0
  local px = tonumber(ARGV[10]) or 0
  local full, floor_factor = tonumber(ARGV[15]), tonumber(ARGV[16])
  local unknown_weight, margin = tonumber(ARGV[17]), tonumber(ARGV[18])
  local size = math.min(1, math.max(floor_factor, px / full))
  local weight = unknown_weight
  if pid ~= '' then
    weight = math.max(0, score)
  end
  -- Integer thousandths: sums are exact, so an exact tie is a real tie.
  local milli = math.floor(size * weight * 1000 + 0.5)
  local cand = 'unknown'
  if pid ~= '' then
    cand = 'p:' .. pid
    redis.call('HSET', key, 'pname:' .. pid, pname)
  end
  redis.call('HINCRBY', key, 'vote:' .. cand, milli)

  local best, best_total, tied = nil, 0, false
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 5) == 'vote:' then
      local total = tonumber(all[i + 1])
      if total > best_total then
        best, best_total, tied = string.sub(all[i], 6), total, false
      elseif total == best_total and total > 0 then
        tied = true
      end
    end
  end
  -- Only this shot's candidate gained weight, so a change of leader is always to it.
  if best == nil or tied or best ~= cand then
    return
  end

  local kind = 'arrived'
  if get('decided') == '1' then
    local current = 'unknown'
    if get('person') ~= '' then
      current = 'p:' .. get('person')
    end
    -- Same identity: nothing new. A decided person is not taken back by unknown shots (a bad
    -- angle makes an unknown; it does not make someone else).
    if current == cand or cand == 'unknown' then
      return
    end
    if current ~= 'unknown' and best_total - int('vote:' .. current) <= math.floor(margin * 1000 + 0.5) then
      return
    end
    kind = 'updated'
  end
  redis.call('HSET', key, 'decided', '1', 'person', pid, 'person_name', pname, 'score', ARGV[9],
    'md5', ARGV[11], 'bbox', ARGV[12], 'capture_ts', ARGV[13], 'model', ARGV[14])
  if kind == 'arrived' then
    names[#names + 1] = announce('arrived', 'arrived')
  else
    names[#names + 1] = announce('updated', 'updated:' .. redis.call('HINCRBY', key, 'updates', 1))
  end
end

if op == 'fold' or op == 'failed' then
  local shot = 'shot:' .. ARGV[6]
  local seen = get(shot)
  if seen then
    return reply('duplicate', split(seen))
  end
  redis.call('HINCRBY', key, 'folded', 1)
  local names = {}
  -- After `left` the visit is over: late shots are counted, they no longer vote.
  if op == 'fold' and not get('ann:left') then
    vote(names)
  end
  left_due(names)
  redis.call('HSET', key, shot, table.concat(names, ','))
  redis.call('EXPIRE', key, ttl)
  return reply('ok', names)
end

if op == 'end' then
  if get('ended') == '1' then
    return reply('duplicate', { 'left' })
  end
  redis.call('HSET', key, 'ended', '1', 'last_seen', ARGV[6], 'faces_seen', ARGV[7])
  local names = {}
  left_due(names)
  redis.call('EXPIRE', key, ttl)
  return reply('ok', names)
end

if op == 'published' then
  if not get('ann:' .. ARGV[6]) then
    return { 'missing' }
  end
  redis.call('HSET', key, 'pub:' .. ARGV[6], '1')
  redis.call('EXPIRE', key, ttl)
  return { 'ok' }
end

if op == 'visitor' then
  -- ARGV[6] visitor id, ARGV[7] '1' to announce it for a known person too, ARGV[8..] the
  -- announcements to carry it (those not yet published). The first visitor set wins: a
  -- redelivered shot resolving again gets the same one back.
  if not get('visitor') then
    redis.call('HSET', key, 'visitor', ARGV[6], 'visitor_known', ARGV[7])
  end
  local visitor = get('visitor')
  local names = {}
  for i = 8, #ARGV do
    local name = ARGV[i]
    local json = get('ann:' .. name)
    if json and not get('pub:' .. name) then
      local a = cjson.decode(json)
      if a.decided ~= '1' or a.person == '' or get('visitor_known') == '1' then
        a.visitor = visitor
      end
      redis.call('HSET', key, 'ann:' .. name, cjson.encode(a))
    end
    names[#names + 1] = name
  end
  redis.call('EXPIRE', key, ttl)
  return reply('ok', names)
end

return redis.error_reply('track script: unknown op ' .. tostring(op))
