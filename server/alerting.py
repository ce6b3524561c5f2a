"""How an alert is raised, in the Lua that ``store.py``'s scripts share, and how a device
that flaps at a limit is kept from drowning the others' alerts.

An alert is kept in the ``alerts`` stream (the alert list and the webhook's queue, capped
at ``STREAM_CAP`` entries) and published as an ``alert`` event whose data carries its
``alerts`` entry id and ``raised``, the time it was raised (an offline alert's ``ts`` is
when the device was last seen). Thresholds are a hash per device, metric ->
{"low"?, "high"?, "hysteresis"?}; which of them are crossed now is ``alerting:<device>``,
metric -> "low" | "high". An alert clears only once the value is back inside by the
hysteresis, so a value hovering at a limit does not flap.

A value that flaps anyway (hysteresis 0, or a device posting what it likes with a leaked
token) would fill the stream and the webhook's queue, and push every other device's
alerts out. So each device has a budget of threshold alerts: ``ALERT_BURST`` at once,
then one every ``ALERT_EVERY`` seconds (GCRA, in ``alert-budget:<device>``). Past it a
crossing still changes ``alerting:<device>`` but is neither kept nor published: the
metric is noted in ``alerts-muted:<device>`` (metric -> crossings not sent) and the
device in the ``alerts-muted`` sorted set (score: when its budget allows again). Once
that time has come, the offline sweep calls ``resume_muted``: one alert per muted metric
says where it stands now (its state, or ``cleared``) with ``muted``, the number of
crossings not sent, so the list, the pages and the webhook end up right.
"""
from .shards import LUA_PREFIX, shards_of

STREAM_CAP = 10_000

# ``alert(channel, data)`` keeps and publishes an alert; ``check_thresholds(channel,
# device, fields, at, budget, limits)`` raises or clears the device's threshold alerts for a
# reading (``fields``: name, text, ...; ``budget``: {burst, every seconds}; ``limits``: its
# ``thresholds_of(device)``, metric -> threshold, read once a call).
# cjson writes a number to 14 significant digits: a value of 50.000000000000007 would read
# 50 beside its threshold of 50. So each number of an alert is handed to it as text marked
# with a NUL (which no device or metric name has), its ``exact`` digits (shards.py's
# LUA_PREFIX), and unquoted after.
RAISE_ALERTS = f"""
local function exact_json(value)
  return (string.gsub(cjson.encode(value), '"\\\\u0000([^"]*)"', '%1'))
end

local function alert(channel, data)
  local time = redis.call('TIME')
  data.raised = tonumber(time[1]) + tonumber(time[2]) / 1e6
  for name, value in pairs(data) do
    if type(value) == 'number' then data[name] = '\\0' .. exact(value) end
  end
  data.id = redis.call('XADD', P .. 'alerts', 'MAXLEN', '~', {STREAM_CAP}, '*', 'json', exact_json(data))
  redis.call('PUBLISH', channel, exact_json({{type = 'alert', data = data}}))
end

-- Whether the device may send one more threshold alert now (and if so, it is spent);
-- if not, when it may next.
local function spend_alert(device, at, budget)
  local key = P .. 'alert-budget:' .. device
  local due = math.max(tonumber(redis.call('GET', key) or 0), at)
  local allowed = due - (budget[1] - 1) * budget[2]
  if allowed > at then return false, allowed end
  redis.call('SET', key, string.format('%.17g', due + budget[2]), 'EX', math.ceil(budget[1] * budget[2]) + 1)
  return true
end

local function thresholds_of(device)
  local stored, limits = redis.call('HGETALL', P .. 'thresholds:' .. device), {{}}
  for j = 1, #stored, 2 do limits[stored[j]] = cjson.decode(stored[j + 1]) end
  return limits
end

local function check_thresholds(channel, device, fields, at, budget, limits)
  for k = 1, #fields, 2 do
    local metric = fields[k]
    local limit = limits[metric]
    local value = limit and tonumber(fields[k + 1])
    if value and value == value and math.abs(value) ~= math.huge then  -- a metric's: a text field may read as inf
      local was = redis.call('HGET', P .. 'alerting:' .. device, metric)
      local margin, now_state = limit.hysteresis or 0, false
      if limit.high and value > limit.high then now_state = 'high'
      elseif limit.low and value < limit.low then now_state = 'low'
      elseif was == 'high' and limit.high and value > limit.high - margin then now_state = 'high'
      elseif was == 'low' and limit.low and value < limit.low + margin then now_state = 'low' end
      if now_state ~= was then
        local data = {{device = device, metric = metric, value = value, ts = at}}
        if now_state then
          redis.call('HSET', P .. 'alerting:' .. device, metric, now_state)
          data.state, data.threshold = now_state, limit[now_state]
        else
          redis.call('HDEL', P .. 'alerting:' .. device, metric)
          data.state, data.threshold = 'cleared', limit[was]
        end
        local allowed, next_time = spend_alert(device, at, budget)
        if allowed then
          data.muted = tonumber(redis.call('HGET', P .. 'alerts-muted:' .. device, metric)) or nil
          if data.muted then redis.call('HDEL', P .. 'alerts-muted:' .. device, metric) end
          alert(channel, data)
        else
          redis.call('HINCRBY', P .. 'alerts-muted:' .. device, metric, 1)
          redis.call('ZADD', P .. 'alerts-muted', next_time, device)
        end
      end
    end
  end
end
"""

# ARGV: now (seconds), the channel. For each device whose muted crossings may be sent now:
# an alert per muted metric with its state now. Returns how many were sent.
_RESUME_MUTED = LUA_PREFIX + RAISE_ALERTS + """
local now, sent = tonumber(ARGV[1]), 0
for _, device in ipairs(redis.call('ZRANGEBYSCORE', P .. 'alerts-muted', '-inf', now)) do
  redis.call('ZREM', P .. 'alerts-muted', device)
  local muted = redis.call('HGETALL', P .. 'alerts-muted:' .. device)
  redis.call('DEL', P .. 'alerts-muted:' .. device)
  for j = 1, #muted, 2 do
    local metric = muted[j]
    local state = redis.call('HGET', P .. 'alerting:' .. device, metric) or 'cleared'
    local limit = cjson.decode(redis.call('HGET', P .. 'thresholds:' .. device, metric) or '{}')
    alert(ARGV[2], {device = device, metric = metric, state = state, ts = now, muted = tonumber(muted[j + 1]),
                    value = tonumber(redis.call('HGET', P .. 'device:' .. device, metric)),
                    threshold = limit[state]})
    sent = sent + 1
  end
end
return sent
"""


def alert_budget(config):
    """``check_thresholds``' budget argument, as JSON for a script's ARGV."""
    return f"[{config['ALERT_BURST']}, {config['ALERT_EVERY']}]"


def resume_muted(client, now, channel):
    """Send where each muted metric stands, for the devices whose alert budget allows it
    again; returns how many alerts were sent."""
    script = client.register_script(_RESUME_MUTED)
    return sum(script([prefix], [repr(now), channel], client=client) for prefix in shards_of(client).prefixes)
