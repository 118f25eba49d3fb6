-- Reads and updates the failure records in KEYS, with the rules of
-- brute_force.rs (`verdict`, `apply_failure` and `refund`).
--
-- ARGV[1]          "check": reply with the admission of an attempt now.
--                  "fail": count one failure against every key, unless one
--                  of them is blocked (then nothing is counted). Reply with
--                  the admission the attempt had before it was counted.
--                  "refund": take back one failure from every key, after
--                  an attempt counted in advance succeeded.
-- ARGV[7i - 5 ..]  the thresholds of KEYS[i], in microseconds where they
--                  are times: slow_after, block_after, window, first_block,
--                  max_block, delay_step, max_delay
--
-- Each record is a hash: f failures in the window, ws window start,
-- s blocks in a row, bu blocked until, lf last failure.
-- Reply, per key: 0 allowed, 1 delayed, 2 blocked; then the delay or the
-- time left of the block.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local operation = ARGV[1]
local records = {}
local reply = {}
local any_blocked = false

-- First pass: read every record and its admission, before any update, so
-- a failure is counted against all keys or none.
for i = 1, #KEYS do
  local base = 7 * i - 5
  local record = {
    slow_after = tonumber(ARGV[base]),
    block_after = tonumber(ARGV[base + 1]),
    window = tonumber(ARGV[base + 2]),
    first_block = tonumber(ARGV[base + 3]),
    max_block = tonumber(ARGV[base + 4]),
    delay_step = tonumber(ARGV[base + 5]),
    max_delay = tonumber(ARGV[base + 6]),
  }
  local stored = redis.call('HMGET', KEYS[i], 'f', 'ws', 's', 'bu', 'lf')
  record.failures = tonumber(stored[1]) or 0
  record.window_start = tonumber(stored[2]) or now
  record.streak = tonumber(stored[3]) or 0
  record.blocked_until = tonumber(stored[4]) or 0
  record.last_failure = tonumber(stored[5]) or now
  record.exists = stored[1] ~= false

  if record.blocked_until > now then
    any_blocked = true
    table.insert(reply, 2)
    table.insert(reply, record.blocked_until - now)
  elseif now - record.window_start < record.window and record.failures >= record.slow_after then
    local delay = record.max_delay
    if record.failures - record.slow_after < 62 then
      delay = math.min(record.delay_step * 2 ^ (record.failures - record.slow_after), record.max_delay)
    end
    table.insert(reply, 1)
    table.insert(reply, delay)
  else
    table.insert(reply, 0)
    table.insert(reply, 0)
  end
  records[i] = record
end

local function store(key, record)
  local keep = math.max(record.blocked_until, record.last_failure + record.window + record.max_block) - now
  redis.call('HSET', key,
    'f', string.format('%.0f', record.failures), 'ws', string.format('%.0f', record.window_start),
    's', string.format('%.0f', record.streak), 'bu', string.format('%.0f', record.blocked_until),
    'lf', string.format('%.0f', record.last_failure))
  redis.call('PEXPIRE', key, math.max(math.ceil(keep / 1000), 1))
end

if operation == 'fail' and not any_blocked then
  for i = 1, #KEYS do
    local record = records[i]
    if now - record.window_start >= record.window then
      record.failures = 0
      record.window_start = now
    end
    if now - record.last_failure >= record.window + record.max_block then
      record.streak = 0
    end
    record.last_failure = now
    record.failures = record.failures + 1
    if record.failures >= record.block_after then
      local block = record.max_block
      if record.streak < 62 then
        block = math.min(record.first_block * 2 ^ record.streak, record.max_block)
      end
      record.blocked_until = now + block
      record.streak = record.streak + 1
      record.failures = 0
      record.window_start = now
    end
    store(KEYS[i], record)
  end
elseif operation == 'refund' then
  for i = 1, #KEYS do
    local record = records[i]
    if record.exists and record.failures > 0 then
      record.failures = record.failures - 1
      store(KEYS[i], record)
    end
  end
end

return reply
