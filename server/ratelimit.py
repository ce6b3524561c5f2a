"""Each device's rate limits: ``RATE_LIMIT`` requests and ``READINGS_RATE_LIMIT`` readings
a second, after bursts of ``RATE_BURST`` and ``READINGS_BURST``, checked in Redis (GCRA,
as redis-cell does) inside the very script that stores the readings (``store.py``), so
a limit costs no round trip of its own and holds across every process and instance.

A device told to wait is refused again by the process that told it (``refuse_if_waiting``)
until the wait is over, before its body is even read: a leaked token posting large batches
as fast as it can costs the server no more than a stranger's unknown token does."""
import math
import time

from flask import current_app

from .shards import LUA_PREFIX, shards_of

# GCRA (as redis-cell): ``ratelimit:<device>`` holds the theoretical arrival time (ms)
# of the device's requests, ``ratelimit:<device>:readings`` that of its readings. ARGV
# from ``first``: the device ('' for no limit), then ms between requests and their burst,
# ms between readings and their burst. Takes one request and ``readings`` readings, or
# nothing: returns 0, or the ms to wait until both fit.
RATE_LIMIT = """
local function take(first, now_ms, readings)
  if ARGV[first] == '' then return 0 end
  local limits = {{P .. 'ratelimit:' .. ARGV[first], tonumber(ARGV[first + 1]), tonumber(ARGV[first + 2]), 1},
                  {P .. 'ratelimit:' .. ARGV[first] .. ':readings', tonumber(ARGV[first + 3]), tonumber(ARGV[first + 4]),
                   math.min(readings, tonumber(ARGV[first + 4]))}}
  local wait, dues = 0, {}
  for i, limit in ipairs(limits) do
    local key, interval, burst, cost = unpack(limit)
    dues[i] = math.max(tonumber(redis.call('GET', key) or 0), now_ms) + interval * cost
    wait = math.max(wait, dues[i] - now_ms - interval * burst)
  end
  if wait > 0 then return math.ceil(wait) end
  for i, limit in ipairs(limits) do
    if dues[i] > now_ms then
      redis.call('SET', limit[1], string.format('%d', math.floor(dues[i])), 'PX', math.ceil(dues[i] - now_ms))
    end
  end
  return 0
end
"""


class RateLimited(Exception):
    """A device sent more than its rate limits allow: ``RATE_LIMIT`` requests or
    ``READINGS_RATE_LIMIT`` readings a second, after a burst of ``RATE_BURST`` or
    ``READINGS_BURST``."""

    def __init__(self, retry_after):
        super().__init__(f"too many requests from this device; retry in {math.ceil(retry_after)} s")  # as Retry-After
        self.retry_after = retry_after


def rate_limits(config, device):
    """``RATE_LIMIT``'s arguments for a request by ``device``."""
    if not config["RATE_LIMIT"] or not device:
        return ["", 0, 0, 0, 0]
    readings = config["READINGS_RATE_LIMIT"]  # 0: no limit of its own (a reading takes no time)
    return [device, 1000 / config["RATE_LIMIT"], config["RATE_BURST"], 1000 / readings if readings else 0,
            config["READINGS_BURST"]]


_TAKE_REQUEST = LUA_PREFIX + RATE_LIMIT + """
return take(2, tonumber(ARGV[1]) * 1000, 0)
"""


def take_request(client, device, now, config):
    """Count one request that stores no reading (a firmware report, say) against
    ``device``'s rate limit; raises ``RateLimited`` past it."""
    script = client.register_script(_TAKE_REQUEST)
    wait = script([shards_of(client).prefix(device)], [repr(now), *rate_limits(config, device)], client=client)
    if wait:
        raise RateLimited(wait / 1000)


def _waiting(app):
    """device -> time.monotonic() when the wait this process gave it is over."""
    return app.extensions.setdefault("sensorcast.waiting", {})


def note_wait(device, error):
    """Remember that ``device`` was told to wait (``error``, a ``RateLimited``)."""
    _waiting(current_app)[device] = time.monotonic() + error.retry_after


def wait_left(app, device):
    """Seconds until the wait this process gave ``device`` is over; 0 when there is none."""
    return max(0.0, _waiting(app).get(device, 0) - time.monotonic())


def refuse_if_waiting(device):
    """Raise ``RateLimited`` while a wait this process gave ``device`` is not over."""
    left = wait_left(current_app, device)
    if left:
        raise RateLimited(left)
    _waiting(current_app).pop(device, None)
