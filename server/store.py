"""Everything the server keeps in Redis: key names, the one pooled client, and the writes.

The keys are a public interface (see the README): third parties XREAD ``readings``
or SUBSCRIBE ``sse``. A request stores its whole batch in one Lua call, so a reading's
event id and its place in the history never disagree, however large the batch.
"""

import heapq
import itertools
import json
import time

import redis

from .alerting import RAISE_ALERTS, alert_budget
from .connections import run_script
from .ratelimit import RATE_LIMIT, RateLimited, rate_limits
from .readings import PRIVATE, InvalidReading
from .retries import SEQS, slot_of
from .rollups import ROLL_UP
from .shards import LUA_PREFIX, shards_of

READINGS = "readings"
DEVICES = "devices"
TOKENS = "tokens"
REVOKED_DEVICES = "revoked-devices"  # their MQTT readings are refused: a broker login is no token to revoke
ALERTS = "alerts"
ACKNOWLEDGED = "alerts-acknowledged"
VIEWERS = "viewers"
LOGGED_OUT = "logged-out"
SESSION_KEY = "session-key"
WEBHOOK_LEASE = "webhook-lease"
CHANNEL = "sse"


def device_readings(client, device):
    return shards_of(client).key(device, f"readings:{device}")


def device_key(client, device):
    return shards_of(client).key(device, f"device:{device}")


def meta_key(client, device):
    return shards_of(client).key(device, f"meta:{device}")


def thresholds_key(client, device):
    return shards_of(client).key(device, f"thresholds:{device}")


def alerting_key(client, device):
    return shards_of(client).key(device, f"alerting:{device}")


def last_seen(client, device):
    """When ``device`` was last seen (seconds), from its shard's ``devices``; None: never."""
    return client.zscore(shards_of(client).key(device, DEVICES), device)


def known_devices(client):
    """Every device and when it was last seen, from each shard's ``devices``, least recent first."""
    shards = shards_of(client)
    with client.pipeline(transaction=False) as pipe:
        for key in shards.each(DEVICES):
            pipe.zrange(key, 0, -1, withscores=True)
        return list(heapq.merge(*pipe.execute(), key=lambda pair: pair[1]))


def entries(client, name, newest_first=False, page=500):
    """The entries of each shard's stream ``name`` merged in id order (oldest first, unless
    ``newest_first``), read a page at a time."""
    return heapq.merge(*(itertools.chain.from_iterable(pages(client, key, count=page, newest_first=newest_first))
                         for key in shards_of(client).each(name)),
                       key=lambda entry: stream_id(entry[0]), reverse=newest_first)


def pages(client, key, start="-", end="+", count=500, newest_first=False):
    """The entries of stream ``key`` from ``start`` to ``end`` (XRANGE bounds), ``count`` a
    page, page by page (from ``end`` back to ``start`` if ``newest_first``)."""
    while True:
        if newest_first:
            page = client.xrevrange(key, end, start, count=count)
        else:
            page = client.xrange(key, start, end, count=count)
        if page:
            yield page
        if len(page) < count:
            return
        if newest_first:
            end = "(" + page[-1][0]
        else:
            start = "(" + page[-1][0]


def stream_id(text):
    """A Redis stream id as a comparable pair, or None for any other event id."""
    millis, _, sequence = (text or "").partition("-")
    if (millis.isascii() and millis.isdigit() and sequence.isascii() and sequence.isdigit()
            and len(millis) <= 20 and len(sequence) <= 20):  # 2**64 has 20 digits
        pair = int(millis), int(sequence)
        if max(pair) < 2**64:
            return pair
    return None


# A reading counts once against STREAM_MAXLEN and HISTORY_MAXLEN per this many bytes of its
# JSON (a small one once): those caps hold a few of the largest readings, so one token's
# readings of 16 long names hold no more memory than readings of a few metrics would.
# Each stream is capped by the mean weight of the readings it took lately (kept in
# ``stream-weights``: '' for ``readings``, a device's id for its history), a mean over
# about as many readings as the cap: a few heavy readings shorten it by their share, not
# as if every reading it holds were as heavy (one device's would cut every other's replay).
READING_BYTES = 256

# KEYS: the tag of the readings' device's shard (shards.py). ARGV: now in seconds,
# retention in seconds, the shard's readings stream cap, channel, the readings as JSON:
# [{"device", "boot"?, "seq"?, "slot"?, "fields": [name, value, ...]}], then the rate
# limits (``ratelimit.RATE_LIMIT``, from ARGV[6]), then the most readings a device's history
# keeps (ARGV[11], as well as ``retention``), and the most field names a device may have
# in all (ARGV[12]): past it, nothing is stored (the rate limit charged all the same) and
# the answer is 'too many names'; then
# each device's alert budget (ARGV[13], alerting.py); the transport the readings came by
# (ARGV[14]), for the ``metrics`` counters of readings stored and of duplicates; the
# SHA-256 of the token they came with (ARGV[15], '' for none): one not in ``tokens`` for the
# readings' device stores nothing, and the answer is 'revoked', as it is for readings that
# came over MQTT of a device in ``revoked-devices``; then each reading as its event shows
# it, as JSON, one a line (ARGV[16]: one argument, not one each, is cheaper to send). A reading that conflicts with one stored under its boot and seq (retries.py) stores
# nothing either: the answer is {'conflict', boot, seq, the boot's highest seq}. A device the sweep marked offline is
# announced back online (once: only the sweep's mark counts, not the time it was away). Returns each reading's stream id,
# or nil for a retried (already stored) one, then the first reading's device's boot and seq as
# the dedup rule knows them now (nil, nil: none); or, over a limit, the milliseconds to wait,
# having stored nothing.
_ADD_READINGS = LUA_PREFIX + RAISE_ALERTS + RATE_LIMIT + ROLL_UP + SEQS + f"local READING_BYTES = {READING_BYTES}" + """
local now, retention, cap, channel = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local function weight(r) return math.max(1, #r.json / READING_BYTES) end
local function mean_with(mean, r, over) return mean + (weight(r) - mean) / over end  -- over ``over`` readings
local weights = P .. 'stream-weights'
local history_cap = tonumber(ARGV[11])
local readings = cjson.decode(ARGV[5])
local i = 0
for json in string.gmatch(ARGV[16], '[^\\n]+') do i = i + 1; readings[i].json = json end
if ARGV[15] ~= '' and redis.call('HGET', P .. 'tokens', ARGV[15]) ~= readings[1].device then return 'revoked' end
if ARGV[14] == 'mqtt' and redis.call('SISMEMBER', P .. 'revoked-devices', readings[1].device) == 1 then
  return 'revoked'
end
local budget = cjson.decode(ARGV[13])
local wait = take(6, now * 1000, #readings)  -- first: refused or not, readings count against their device's rate
if wait > 0 then return wait end
local names = {}  -- device key -> {count = fields it would have, known = {name = true}}
for _, r in ipairs(readings) do
  local key = P .. 'device:' .. r.device
  names[key] = names[key] or {count = redis.call('HLEN', key), known = {}}
  local device = names[key]
  for k = 1, #r.fields, 2 do
    if not device.known[r.fields[k]] then
      device.known[r.fields[k]] = true
      if redis.call('HEXISTS', key, r.fields[k]) == 0 then device.count = device.count + 1 end
    end
  end
  if device.count > tonumber(ARGV[12]) then return 'too many names' end
end
local devices = {}  -- device -> what this call knows of it (``device_state``)
local function device_state(device)
  local d = devices[device]
  if not d then
    local key = P .. 'device:' .. device
    d = {key = key, known = redis.call('HMGET', key, 'boot', 'boot_seq', 'status', 'seq'), latest = {}, order = {},
         seen_before = redis.call('ZSCORE', P .. 'devices', device), stored = false,
         limits = thresholds_of(device),
         weight = tonumber(redis.call('HGET', weights, device)) or 1}
    if d.known[1] and not d.known[2] then d.known[2] = d.known[4] end  -- as versions before boot_seq kept it
    devices[device] = d
  end
  return d
end
local in_request = {}  -- device, boot and seq -> the digest of the values this request has for them
for _, r in ipairs(readings) do
  local d = device_state(r.device)
  local at = r.slot and (r.device .. ' ' .. r.boot .. ' ' .. r.seq)
  if seen(r, d.known) == 'conflict' or (at and (in_request[at] or r.slot[4]) ~= r.slot[4]) then
    return {'conflict', r.boot, r.seq, d.known[1] == r.boot and d.known[2] or r.seq}
  end
  if at then in_request[at] = r.slot[4] end
end
local min_id = string.format('%d', math.floor((now - retention) * 1000))
local ids, stored = {}, 0
local stream_weight = tonumber(redis.call('HGET', weights, '')) or 1
for i, r in ipairs(readings) do
  local d = device_state(r.device)
  if seen(r, d.known) ~= 'new' then
    ids[i] = false
  else
    keep_seq(r)
    stream_weight, d.weight = mean_with(stream_weight, r, cap), mean_with(d.weight, r, history_cap)
    local id = redis.call('XADD', P .. 'readings', 'MAXLEN', '~', math.floor(cap / stream_weight), '*',
                          unpack(r.fields))
    redis.call('XADD', P .. 'readings:' .. r.device, 'MINID', min_id, id, unpack(r.fields))
    roll_up(r.device, r.fields, id, now, retention)
    if not d.stored then  -- back from the sweep's offline mark, or new: say so once
      local status = nil
      if not d.seen_before then status = 'new' elseif d.known[3] == 'offline' then status = 'online' end
      if status then
        redis.call('PUBLISH', channel, cjson.encode({type = 'device',
          data = {device = r.device, status = status, last_seen = now}}))
      end
      if status == 'online' then alert(channel, {device = r.device, state = 'online', ts = now}) end
      d.stored = true
    end
    if not (d.known[1] == r.boot and d.known[2] and tonumber(d.known[2]) > r.seq) then  -- else a skipped seq
      check_thresholds(channel, r.device, r.fields, now, budget, d.limits)
      for k = 1, #r.fields, 2 do
        if not d.latest[r.fields[k]] then d.order[#d.order + 1] = r.fields[k] end
        d.latest[r.fields[k]] = r.fields[k + 1]
      end
      if r.boot and r.seq then d.known[1], d.known[2] = r.boot, r.seq end
    end
    redis.call('PUBLISH', channel, '{"data":' .. r.json .. ',"type":"reading","id":"' .. id .. '"}')
    ids[i], stored = id, stored + 1
  end
end
for device, d in pairs(devices) do  -- each device's latest values, once
  if d.stored then
    local latest = {'last_seen', ARGV[1], 'status', 'online'}
    if d.known[1] then  -- not among the fields shown; a reading's seq without a boot leaves them be
      latest[5], latest[6], latest[7], latest[8] = 'boot', d.known[1], 'boot_seq', d.known[2]
    end
    for _, name in ipairs(d.order) do latest[#latest + 1], latest[#latest + 2] = name, d.latest[name] end
    redis.call('HSET', d.key, unpack(latest))
    redis.call('ZADD', P .. 'devices', ARGV[1], device)
    redis.call('XTRIM', P .. 'readings:' .. device, 'MAXLEN', '~', math.floor(history_cap / d.weight))
    redis.call('HSET', weights, device, d.weight)
  end
end
if stored > 0 then redis.call('HSET', weights, '', stream_weight) end
write_rollups(now, retention)
redis.call('HINCRBY', P .. 'metrics', 'stored:' .. ARGV[14], stored)
redis.call('HINCRBY', P .. 'metrics', 'duplicates:' .. ARGV[14], #ids - stored)
local first = devices[readings[1].device].known
return {ids, first[1], first[2]}
"""

# ``go_offline(device, channel)`` marks a known device offline and announces it (a ``device``
# event, an ``offline`` alert), unless it is offline already; returns whether it did.
_GO_OFFLINE = LUA_PREFIX + RAISE_ALERTS + """
local function go_offline(device, channel)
  local key = P .. 'device:' .. device
  if redis.call('HGET', key, 'status') == 'offline' then return false end
  local last_seen = tonumber(redis.call('ZSCORE', P .. 'devices', device))
  redis.call('HSET', key, 'status', 'offline')
  redis.call('PUBLISH', channel, cjson.encode({type = 'device', data = {device = device,
    status = 'offline', last_seen = last_seen}}))
  alert(channel, {device = device, state = 'offline', ts = last_seen})
  return true
end
"""

# ARGV: the cutoff (seconds: a device last seen before it is offline), the channel, when
# this process last found Redis full or away (0: never), now. Marks the devices last seen
# since the previous sweep's cutoff (kept in ``offline-swept``, shared by every process and
# instance) offline once, and announces it. Not one while the cutoff is before the last time
# any process found Redis full or away, or no process swept for ``UNSWEPT_GAP`` seconds
# (every server stopped: kept in ``devices-unheard-at``, the last sweep's time by Redis's
# clock in ``offline-sweep-at``): no upload was stored meanwhile, and every device gets
# ``OFFLINE_AFTER`` from then to be stored again.
UNSWEPT_GAP = 10
_MARK_OFFLINE = _GO_OFFLINE + f"local UNSWEPT_GAP = {UNSWEPT_GAP}\n" + """
local time = redis.call('TIME')  -- Redis's clock: instances whose clocks disagree agree on it
local swept_at = time[1] .. '.' .. string.format('%06d', tonumber(time[2]))
local last_sweep = tonumber(redis.call('GET', P .. 'offline-sweep-at') or swept_at)
redis.call('SET', P .. 'offline-sweep-at', swept_at)
local unheard_at = tonumber(swept_at) - last_sweep > UNSWEPT_GAP and tonumber(ARGV[4]) or tonumber(ARGV[3])
local unheard = tonumber(redis.call('GET', P .. 'devices-unheard-at') or '0')
if unheard_at > unheard then
  unheard = unheard_at
  redis.call('SET', P .. 'devices-unheard-at', string.format('%.17g', unheard_at))
end
if tonumber(ARGV[1]) < unheard then return {} end
local swept = redis.call('GET', P .. 'offline-swept') or '-inf'
if swept ~= '-inf' and tonumber(swept) >= tonumber(ARGV[1]) then return {} end
local gone = {}
for _, device in ipairs(redis.call('ZRANGEBYSCORE', P .. 'devices', '(' .. swept, ARGV[1])) do
  if go_offline(device, ARGV[2]) then gone[#gone + 1] = device end
end
redis.call('SET', P .. 'offline-swept', ARGV[1])
return gone
"""

# ARGV: a device, when its last will came (seconds), the channel. Marks the device offline
# as the sweep would, once, unless a reading was stored since the will came (the board is back).
_MARK_DROPPED = _GO_OFFLINE + """
local last_seen = redis.call('ZSCORE', P .. 'devices', ARGV[1])
return last_seen and tonumber(last_seen) <= tonumber(ARGV[2]) and go_offline(ARGV[1], ARGV[3]) and 1 or 0
"""


class NotReplicated(redis.exceptions.ConnectionError):
    """Fewer replicas than ``WAIT_REPLICAS`` confirmed the readings: a failover now could
    lose them, so the upload is not answered 201 (but 503: sent again, it is stored once)."""


class TokenRevoked(Exception):
    """The token the readings came with no longer writes as their device, or (over MQTT,
    where there is no token) their device's tokens were revoked: nothing stored."""


class Conflict(Exception):
    """A reading's boot and seq already hold another reading (retries.py): the request
    stored nothing."""

    def __init__(self, boot, seq, highest):
        super().__init__(f"seq {seq} of boot {boot!r} already holds another reading: "
                         "start a new boot id and send these readings again under it")
        self.boot, self.seq, self.highest = boot, seq, highest


_scripts = {}  # Lua text -> its Script (which runs on whichever client it is called with)


def _script(client, text):
    """``text``'s Script, its SHA-1 worked out at the first call only: the script is long."""
    if text not in _scripts:
        _scripts[text] = client.register_script(text)
    return _scripts[text]


def add_readings(client, readings, now, config, transport="http", token_digest=""):
    """Store clean readings atomically; return their stream ids (None for a retry), and
    ``{"boot", "seq"}``: the first reading's boot and the highest seq stored under it, if
    that is its device's latest boot (the ones a retry is recognised by; None otherwise),
    so a board can tell when a stranger with its token holds seqs it never sent.

    The request counts against its device's rate limits: over one, nothing is stored and
    ``RateLimited`` says how long to wait. What is stored is counted for ``/metrics``, by
    ``transport`` (metrics.py). With ``token_digest``, the token is checked in the same
    call: ``TokenRevoked`` if it no longer writes as the readings' device; over MQTT, if the
    device's tokens were revoked (``REVOKED_DEVICES``).
    """
    now_text = repr(now)
    rows, shown = zip(*(_row(reading, now, now_text) for reading in readings))
    script = _script(client, _ADD_READINGS)
    shards = shards_of(client)
    if len(shards.prefixes) > 1 and len({reading["device"] for reading in readings}) > 1:
        raise InvalidReading("device", "on a Redis Cluster a request's readings are of one device: "
                                       "send each device's readings in requests of their own")
    args = [repr(now), config["RETENTION"], config["STREAM_MAXLEN"] // len(shards.prefixes), CHANNEL, "[%s]" % ",".join(rows),
            *rate_limits(config, readings[0]["device"]), config["HISTORY_MAXLEN"], config["MAX_DEVICE_FIELDS"],
            alert_budget(config), transport, token_digest, "\n".join(shown)]
    keys = [shards.prefix(readings[0]["device"])]
    if not config["WAIT_REPLICAS"]:
        result = run_script(client, script, keys, args)
    else:
        with client.pipeline(transaction=False) as pipe:  # WAIT counts the writes of its own connection
            script(keys, args, client=pipe)
            pipe.wait(config["WAIT_REPLICAS"], config["WAIT_MS"])
            result, replicas = pipe.execute()
        if replicas < config["WAIT_REPLICAS"]:
            raise NotReplicated(f"{replicas} of {config['WAIT_REPLICAS']} replicas had the readings "
                                f"within {config['WAIT_MS']} ms")
    if isinstance(result, int):
        raise RateLimited(result / 1000)
    if isinstance(result, list) and result[0] == "conflict":
        raise Conflict(result[1], result[2], int(result[3]))
    if result == "revoked":
        raise TokenRevoked()
    if isinstance(result, str):
        raise InvalidReading("body", f"a device may have {config['MAX_DEVICE_FIELDS']} field names in all, "
                                     "its metrics and the server's own: this would be more")
    ids, boot, seq = result
    if boot is None or boot != readings[0].get("boot"):  # a stranger with the token learns no board's boot
        return ids, {"boot": None, "seq": None}
    return ids, {"boot": boot, "seq": int(seq)}


def _row(reading, now, now_text):
    """The script's view of a clean reading, and the reading as its event shows it, as JSON
    texts written out directly: validate() lets through only names, devices and firmware
    versions of ``A-Za-z0-9_.+-`` (nothing to escape) and finite numbers (no bool), whose
    repr is their JSON. A reading without a time of its own has ``now`` (validate), whose
    text ``now_text`` is made once for the request: a float's repr is half of a row's cost."""
    fields, shown = [], []
    for name, value in reading.items():
        if type(value) is str:  # the device, boot and fw
            if name not in PRIVATE:
                fields += (name, value)
                shown.append(f'"{name}":"{value}"')
        else:
            text = now_text if value is now else repr(value)
            fields += (name, text)
            shown.append(f'"{name}":{text}')
    row = '{"device":"%s","fields":["%s"]' % (reading["device"], '","'.join(fields))
    if "seq" in reading and "boot" in reading:
        row += ',"seq":%d,"boot":"%s","slot":[%d,%d,%d,%d]' % (reading["seq"], reading["boot"], *slot_of(reading, shown))
    return row + "}", "{" + ",".join(shown) + "}"


def trim_histories(client, now, retention):
    """Trim every device's history to its last ``retention`` seconds. The ingest trims a
    history as it writes to it; without writes (a device gone silent; a full Redis, which
    refuses them all) a history would keep its readings for good, and a full Redis would
    stay full. XTRIM frees memory, so a full Redis runs it too."""
    oldest = "%d" % ((now - retention) * 1000)
    devices = [device for device, _ in known_devices(client)]
    with client.pipeline(transaction=False) as pipe:
        for device in devices:
            pipe.xtrim(device_readings(client, device), minid=oldest, approximate=False)
        pipe.execute()


def mark_offline(client, cutoff, unheard_at=0.0):
    """Mark the devices not seen since ``cutoff`` offline, once, unless Redis was full or away
    since (at ``unheard_at`` as this process found it, or later as another did), or no server
    swept for a while until now; returns the ones marked now."""
    script = _script(client, _MARK_OFFLINE)
    args = [repr(cutoff), CHANNEL, repr(unheard_at), repr(time.time())]
    return [device for prefix in shards_of(client).prefixes for device in script([prefix], args, client=client)]


def mark_dropped(client, device, will_time):
    """Mark ``device`` offline at once, as ``mark_offline`` would, when its last will came at
    ``will_time`` and no reading was stored since; True if it was marked now (by this call only,
    however many processes heard the will)."""
    script = _script(client, _MARK_DROPPED)
    return script([shards_of(client).prefix(device)], [device, repr(will_time), CHANNEL], client=client) == 1


# ARGV: the device, the metric, its threshold, the channel, the event saying so, the most
# thresholds a device may have. Kept for a device the server knows only, so a delete in
# between leaves no threshold behind: 1, or 0 for no such device, -1 for one too many.
_KEEP_THRESHOLD = LUA_PREFIX + """
if not redis.call('ZSCORE', P .. 'devices', ARGV[1]) then return 0 end
local key = P .. 'thresholds:' .. ARGV[1]
if redis.call('HLEN', key) >= tonumber(ARGV[6]) and redis.call('HEXISTS', key, ARGV[2]) == 0 then return -1 end
redis.call('HSET', key, ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""


def keep_threshold(client, device, metric, limit, event, most):
    """Keep ``limit`` (its JSON) as ``device``'s threshold on ``metric`` and publish ``event``.
    LookupError for a device the server does not know, ValueError if it has ``most`` on
    other metrics already."""
    script = _script(client, _KEEP_THRESHOLD)
    kept = script([shards_of(client).prefix(device)], [device, metric, limit, CHANNEL, event, most], client=client)
    if kept == 0:
        raise LookupError(f"no device {device!r} has sent a reading")
    if kept == -1:
        raise ValueError(f"{device} has {most} thresholds, the most a device may have (as many as its field "
                         "names, SENSORCAST_MAX_DEVICE_FIELDS): remove one first")


# ARGV: the device, the metric, the channel, now. A metric crossed when its threshold is
# removed is no longer crossed: that is a ``cleared`` alert, so every page and the
# webhook hear it.
_CLEAR_THRESHOLD = LUA_PREFIX + RAISE_ALERTS + """
local removed = redis.call('HDEL', P .. 'thresholds:' .. ARGV[1], ARGV[2])
if redis.call('HDEL', P .. 'alerting:' .. ARGV[1], ARGV[2]) == 1 then
  alert(ARGV[3], {device = ARGV[1], metric = ARGV[2], state = 'cleared', reason = 'threshold removed',
                  ts = tonumber(ARGV[4])})
end
return removed
"""


# ARGV: the device, the version its update is to, its status and reason, the channel, the
# ``device`` event saying so. Kept and published for a device the server knows only: a
# report must not make one that never posted, nor bring a deleted one back.
_NOTE_UPDATE = LUA_PREFIX + """
if not redis.call('ZSCORE', P .. 'devices', ARGV[1]) then return 0 end
redis.call('HSET', P .. 'device:' .. ARGV[1], 'fw_update', ARGV[2], 'fw_status', ARGV[3], 'fw_error', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""


def note_update(client, device, version, status, reason):
    """Keep how ``device``'s update to ``version`` went, and tell every page; False for a
    device the server does not know."""
    event = json.dumps({"type": "device", "data": {"device": device, "status": "firmware", "fw_update": version,
                                                   "fw_status": status, "fw_error": reason}})
    script = _script(client, _NOTE_UPDATE)
    return script([shards_of(client).prefix(device)], [device, version, status, reason, CHANNEL, event],
                  client=client) == 1


def clear_threshold(client, device, metric, now):
    """Remove ``device``'s threshold on ``metric`` (clearing its alert if one is raised);
    whether it had one."""
    script = _script(client, _CLEAR_THRESHOLD)
    return script([shards_of(client).prefix(device)], [device, metric, CHANNEL, repr(now)], client=client) == 1
