"""Pre-aggregated history: per metric and time slot, the count, sum, min and max of a
device's readings, kept up to date as readings are stored, so a chart of a long range
reads hundreds of slots instead of every raw reading (as RRD or TimescaleDB's
continuous aggregates do).

``ROLL_UP`` is Lua that ``store.py`` runs for each reading inside the very call that
stores it, so a reading and its rollups never disagree; a retry that is not stored is
not counted either. Slots are by measured time (``ts``): a backlog a board uploads late
lands in the slots of when it was measured, as it does in the raw history.

Three tiers, each a slot size, the span one hash holds, and how far back it reaches::

    rollup:<device>:10:<start>    10 s slots, a key per 10 min   a day    (1 h / 300 buckets: 12 s wide)
    rollup:<device>:60:<start>    1 min slots, a key per hour    RETENTION (24 h / 300 buckets: 288 s)
    rollup:<device>:600:<start>   10 min slots, a key per 6 h    RETENTION (7 d / 300 buckets: 2016 s)

``<start>`` is the key's first second (Unix seconds, a multiple of its span); a field
is ``<slot start>:<metric>``, its value ``"<count> <sum> <min> <max>"``. A key holds at
most 60 slots, so a device's key of up to 8 metrics stays within Redis's compact
encoding of a hash (``hash-max-listpack-entries``, 512 by default): half the memory of
the hash table it would be past that, the most of what a slow board costs. A query reads
the coarsest tier whose slot fits in its bucket width (buckets under 10 s wide come
from the raw readings). 10 s is the finest slot that keeps a whole hour cheap for a
device sending many readings a second; each tier is 6 or 10 times the one before, so a
query reads at most about ten slots per bucket and metric, whatever its range. A stored
batch costs, per key it touches (three for a lone reading), one HMGET and one HSET of
all its fields, whatever the number of metrics and readings, and an EXPIREAT when it
adds a field or lands in a span already over. A key expires its tier's reach (``RETENTION``,
or a day for the 10 s slots) after the later of its span's end and its last late write,
so it outlives every reading in it, as ``readings:<device>`` keeps a reading for
``RETENTION`` after it arrives.

A tier keeps a reading (measured up to a key's span before its reach) only while it is
that recent, and a key lives that long after its span: the 10 s slots serve charts of
the last day, which read a busy device's hour at a glance; older, narrow buckets come
from the raw readings (or, past ``history.RAW_READINGS``, the 1 min slots). A reading
measured earlier still is kept in the raw history (and its CSV) but in no slot, so slots
for any ``ts`` a device cares to send, years apart, cost nothing: a device's 10 s slots
hold at most a day, its others ``RETENTION`` and a day; and each slot at most the
device's metric names, of which it has at most ``MAX_DEVICE_FIELDS`` (``store.py``).

Readings stored before rollups existed (by an older server) are in no slot: the id of
the first reading each device had rolled up is kept in ``rollups-from``, and a query
reads what arrived before it from the raw readings, so an upgrade loses no history
from the charts (those old readings age out within ``RETENTION``).

A slot counts in the bucket where it starts; one that straddles ``since`` counts in
the first, one that starts at ``until`` in none. Buckets whose edges fall on slot
boundaries (a range starting on the hour, say) are exactly what the raw readings give;
other edges are blurred by less than one slot, which is never wider than the bucket.
"""
import math

from .readings import EARLIEST_SYNCED_TS, NOT_METRICS
from .shards import shards_of

HOUR = 3600
DAY = 24 * HOUR
ROLLUPS_FROM = "rollups-from"
# slot seconds, key span seconds, and how far back the tier reaches (None: RETENTION)
TIERS = ((10, 600, DAY), (60, HOUR, None), (600, 6 * HOUR, None))
# slot seconds -> the span of a key of theirs that a server before this one wrote (each a
# multiple of today's), read until such keys have expired: a tier's reach after an upgrade
EARLIER_SPANS = {10: HOUR, 60: 6 * HOUR, 600: DAY}


def rollup_key(client, device, size, start):
    return shards_of(client).key(device, f"rollup:{device}:{size}:{start}")


def slot_size(width, since, now):
    """The coarsest slot size that fits in a bucket ``width`` seconds wide and whose tier
    reaches back to ``since``, or None."""
    fitting = [size for size, _, reach in TIERS if size <= width and (reach is None or since >= now - reach)]
    return fitting[-1] if fitting else None


def finest_slot(since, now):
    """The finest slot size whose tier reaches back to ``since``."""
    return min(size for size, _, reach in TIERS if reach is None or since >= now - reach)


def slots(client, device, size, since, until, readings):
    """``(start, metric, count, sum, min, max)`` of each of the device's slots of ``size``
    seconds that overlap ``since`` to ``until`` (a slot starting at ``until`` does not),
    and the id of the newest entry of ``readings`` (the device's stream; None for none) as
    of them, read in one transaction: they count every reading stored up to it, none after."""
    span = {tier[0]: tier[1] for tier in TIERS}[size]
    first = math.floor(max(since, EARLIEST_SYNCED_TS) / EARLIER_SPANS[size]) * EARLIER_SPANS[size]
    with client.pipeline(transaction=True) as pipe:  # a device's keys are in one cluster slot
        for start in range(first, math.ceil(until), span):
            pipe.hgetall(rollup_key(client, device, size, start))
        pipe.xrevrange(readings, count=1)
        *hashes, newest = pipe.execute()
    return list(_summaries(hashes, size, since, until)), newest[0][0] if newest else None


def _summaries(hashes, size, since, until):
    for fields in hashes:
        for field, summary in fields.items():
            start, _, metric = field.partition(":")
            start = int(start)
            if since - size < start < until:
                count, total, low, high = summary.split()
                yield start, metric, int(count), float(total), float(low), float(high)


def rolled_up_from(client, device):
    """The stream id of the device's first reading counted in rollups (None: none yet)."""
    return client.hget(shards_of(client).key(device, ROLLUPS_FROM), device)


def forget(client, device):
    """Delete all of ``device``'s rollups. They are found with SCAN (a late backlog can put
    them anywhere in time), so this walks the keyspace: fine for deleting a device."""
    client.hdel(shards_of(client).key(device, ROLLUPS_FROM), device)
    keys = list(client.scan_iter(match=rollup_key(client, device, "*", "*"), count=1000))
    for first in range(0, len(keys), 1000):
        client.unlink(*keys[first:first + 1000])


def _lua_set(names):
    return "{" + ", ".join(f"['{name}'] = true" for name in names) + "}"


# ``roll_up(device, fields, id, oldest)`` counts a stored reading (``fields`` as in its history:
# name, text, ...; ``id``, its stream id, noted in ``rollups-from`` if it is the device's
# first) in ``rollup_pending``, unless it was measured over a day before ``oldest`` (seconds); ``write_rollups(now, retention)``, once the batch is
# stored, merges that into Redis: per key touched, one HMGET and one HSET (in pieces of
# ROLLUP_PIECE fields, as Lua's unpack is limited), and an EXPIREAT when needed. Min and
# max keep the text as sent, unless it is longer than any double needs (a 100-digit
# integer: a leaked token's way to make each slot weigh 400 bytes); a sum is written with
# the digits that read back as its double (``exact``, from LUA_PREFIX, which a script
# that rolls up begins with).
ROLL_UP = f"""
local ROLLUP_TIERS = {{{", ".join(f"{{{size}, {span}, {reach or 0}}}" for size, span, reach in TIERS)}}}
local ROLLUP_SKIP = {_lua_set(NOT_METRICS)}
local ROLLUP_PIECE = 1000
local ROLLUP_TEXT = 24  -- characters of a value's text kept as sent: a double's shortest is at most that
-- key -> {{ends = its span's end, keep, order = {{{{slot, metric}}, ...}},
--         slots = {{slot -> {{metric -> summary}}}}}}
local rollup_pending = {{}}
local rollup_blocks = {{}}  -- device -> {{tier -> {{span start -> its key's pending}}}}: found with no key name made
local rollup_from_noted = {{}}  -- device -> true once this call noted it in rollups-from

local function roll_up(device, fields, id, now, retention)
  if not rollup_from_noted[device] then
    redis.call('HSETNX', P .. '{ROLLUPS_FROM}', device, id)
    rollup_from_noted[device] = true
  end
  local ts, names, values = nil, {{}}, {{}}
  for k = 1, #fields, 2 do
    if fields[k] == 'ts' then ts = tonumber(fields[k + 1])
    elseif not ROLLUP_SKIP[fields[k]] then
      names[#names + 1] = k
      values[#names] = tonumber(fields[k + 1])
    end
  end
  if not ts then return end
  local blocks = rollup_blocks[device]
  if not blocks then
    blocks = {{}}
    for t = 1, #ROLLUP_TIERS do blocks[t] = {{}} end
    rollup_blocks[device] = blocks
  end
  for t, tier in ipairs(ROLLUP_TIERS) do
    local size, span = tier[1], tier[2]
    local keep = tier[3] > 0 and tier[3] or retention
    if ts >= now - keep - span then  -- within this tier's reach (and a key's span)
      local block = math.floor(ts / span) * span
      local pending = blocks[t][block]
      if not pending then
        pending = {{ends = block + span, keep = keep, order = {{}}, slots = {{}}}}
        rollup_pending[P .. 'rollup:' .. device .. ':' .. size .. ':' .. block] = pending  -- whole numbers print whole
        blocks[t][block] = pending
      end
      local slot = math.floor(ts / size) * size
      local metrics = pending.slots[slot]
      if not metrics then
        metrics = {{}}
        pending.slots[slot] = metrics
      end
      for i, k in ipairs(names) do
        local name, text, value = fields[k], fields[k + 1], values[i]
        if #text > ROLLUP_TEXT then text = exact(value) end  -- 100 digits read back as a double's 17
        local summary = metrics[name]
        if not summary then
          pending.order[#pending.order + 1] = {{slot, name}}
          metrics[name] = {{1, value, value, text, value, text}}
        else
          summary[1], summary[2] = summary[1] + 1, summary[2] + value
          if value < summary[3] then summary[3], summary[4] = value, text end
          if value > summary[5] then summary[5], summary[6] = value, text end
        end
      end
    end
  end
end

local function rollup_merged(summary, old)  -- a slot's text: this call's summary, merged with the one stored
  local count, total, low, low_text, high, high_text = unpack(summary)
  local total_text = count == 1 and low_text
  if old then
    local was_count, was_total, was_low, was_high = string.match(old, '^(%S+) (%S+) (%S+) (%S+)$')
    count, total, total_text = count + tonumber(was_count), total + tonumber(was_total), nil
    if tonumber(was_low) <= low then low_text = was_low end
    if tonumber(was_high) >= high then high_text = was_high end
  end
  return count .. ' ' .. (total_text or exact(total)) .. ' ' .. low_text .. ' ' .. high_text
end

local function write_rollups(now, retention)
  for key, pending in pairs(rollup_pending) do
    local added = 0
    for first = 1, #pending.order, ROLLUP_PIECE do
      local fields, summaries = {{}}, {{}}
      for i = first, math.min(first + ROLLUP_PIECE - 1, #pending.order) do
        local slot, name = unpack(pending.order[i])
        fields[#fields + 1] = slot .. ':' .. name
        summaries[#fields] = pending.slots[slot][name]
      end
      local old, new = redis.call('HMGET', key, unpack(fields)), {{}}
      for i, field in ipairs(fields) do
        new[2 * i - 1], new[2 * i] = field, rollup_merged(summaries[i], old[i])
      end
      added = added + redis.call('HSET', key, unpack(new))
    end
    if added > 0 or now > pending.ends then
      redis.call('EXPIREAT', key, math.ceil(math.max(pending.ends, now) + pending.keep))
    end
  end
  rollup_pending, rollup_blocks = {{}}, {{}}
end
"""
