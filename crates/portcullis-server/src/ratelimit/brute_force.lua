-- Reads, and with ARGV[1] = "fail" updates, the failure records in KEYS.
-- The rules are those of brute_force.rs (`verdict` and `apply_failure`).
--
-- ARGV[1]          "check" or "fail"
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
local fail = ARGV[1] == 'fail'
local reply = {}

for i = 1, #KEYS do
  local base = 7 * i - 5
  local slow_after = tonumber(ARGV[base])
  local block_after = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local first_block = tonumber(ARGV[base + 3])
  local max_block = tonumber(ARGV[base + 4])
  local delay_step = tonumber(ARGV[base + 5])
  local max_delay = tonumber(ARGV[base + 6])

  local stored = redis.call('HMGET', KEYS[i], 'f', 'ws', 's', 'bu', 'lf')
  local failures = tonumber(stored[1]) or 0
  local window_start = tonumber(stored[2]) or now
  local streak = tonumber(stored[3]) or 0
  local blocked_until = tonumber(stored[4]) or 0
  local last_failure = tonumber(stored[5]) or now

  if fail then
    if now - window_start >= window then
      failures = 0
      window_start = now
    end
    if now - last_failure >= window + max_block then
      streak = 0
    end
    last_failure = now
    failures = failures + 1
    if failures >= block_after then
      local block = max_block
      if streak < 62 then
        block = math.min(first_block * 2 ^ streak, max_block)
      end
      blocked_until = now + block
      streak = streak + 1
      failures = 0
      window_start = now
    end
    local keep = math.max(blocked_until, last_failure + window + max_block) - now
    redis.call('HSET', KEYS[i],
      'f', string.format('%.0f', failures), 'ws', string.format('%.0f', window_start),
      's', string.format('%.0f', streak), 'bu', string.format('%.0f', blocked_until),
      'lf', string.format('%.0f', last_failure))
    redis.call('PEXPIRE', KEYS[i], math.max(math.ceil(keep / 1000), 1))
  end

  if blocked_until > now then
    table.insert(reply, 2)
    table.insert(reply, blocked_until - now)
  elseif now - window_start < window and failures >= slow_after then
    local delay = max_delay
    if failures - slow_after < 62 then
      delay = math.min(delay_step * 2 ^ (failures - slow_after), max_delay)
    end
    table.insert(reply, 1)
    table.insert(reply, delay)
  else
    table.insert(reply, 0)
    table.insert(reply, 0)
  end
end
return reply
