"""How a retried reading is told from a new one, and from a forged one.

A board stamps each reading with its ``boot`` id and a ``seq`` that grows by one, and
sends a batch again when its answer was lost. ``device:<id>`` keeps the latest boot and
the highest seq stored under it (``boot``, ``boot_seq``: a reading's ``seq`` without a
boot is only a value shown, and moves neither); ``seqs:<id>`` keeps, for each of the last ``WINDOW``
seqs, which boot and seq its slot (``seq % WINDOW``) last held and a digest of that
reading's values: a Redis string of 32-bit fields read and written with BITFIELD, at
most 24 KB a device. A reading of the latest boot at or below the highest seq is then

- a retry, not stored again, when its slot holds that boot and seq with the same values;
- a conflict when its slot holds other values under that boot and seq: someone with the
  device's token planted a reading at a seq the board was about to use. The request is
  refused whole (409) and the board starts a new boot (firmware/uplink.py);
- stored when its slot holds no reading of that boot and seq: a seq nobody sent yet, so
  a reading planted ahead makes none of the board's next ones a "duplicate";
- a retry when it is ``WINDOW`` or more below the highest seq: too old to tell.

A reading of an earlier boot (a batch that spans a reboot, sent again) is a retry or a
conflict by its slot in the same way, and stored when its slot has moved on. Two readings
of one request at the same boot and seq with other values are a conflict too.
"""
import functools
import hashlib

from .shards import shards_of

WINDOW = 2048  # far more than a board buffers (300 readings on an ESP32)
SKIPPED = ("ts", "boot", "seq")  # not part of the digest: the server stamps a missing ts


def seqs_key(client, device):
    return shards_of(client).key(device, f"seqs:{device}")


def slot_of(reading, shown):
    """``[slot, boot tag, seq tag, digest]`` of a clean reading with a boot and seq: what
    ``SEQS`` compares and keeps (each tag and the digest a 32-bit number). ``shown``: the
    reading's ``"name":value`` texts as its event writes them (store.py's ``_row``). The
    digest is of its values as ``json.dumps(values, sort_keys=True)`` writes them, which
    puts a space after each name's colon. Nothing else in them has a quote before a colon
    (validate() lets through no string with a quote); a name is ``a-z0-9_``, so sorting
    the texts sorts the names."""
    values = ", ".join(sorted(text for text in shown if not text.startswith(_SKIPPED_TEXTS))).replace('":', '": ')
    seq = reading["seq"]
    return [seq % WINDOW, _boot_tag(reading["boot"]), seq % 0xFFFFFFFF + 1, _tag("{%s}" % values)]


_SKIPPED_TEXTS = tuple(f'"{name}":' for name in SKIPPED)


def _tag(text):
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big")


_boot_tag = functools.lru_cache(maxsize=4096)(_tag)  # a board's boot id is the same in each of its readings


# Lua for store.py's ingest script. ``seen(r, known)`` says what reading ``r`` (with
# ``r.slot`` from ``slot_of``) is, given its device's ``{boot, seq}`` as stored: 'new',
# 'retry' or 'conflict'; ``keep_seq(r)`` notes a stored reading in its slot.
SEQS = f"""
local function seen(r, known)
  if not r.slot then return 'new' end
  if known[1] == r.boot then
    if not (known[2] and tonumber(known[2]) >= r.seq) then return 'new' end
    if tonumber(known[2]) - r.seq >= {WINDOW} then return 'retry' end
  end
  local at = 3 * r.slot[1]
  local held = redis.call('BITFIELD', P .. 'seqs:' .. r.device, 'GET', 'u32', '#' .. at,
    'GET', 'u32', '#' .. at + 1, 'GET', 'u32', '#' .. at + 2)
  if held[1] ~= r.slot[2] or held[2] ~= r.slot[3] then return 'new' end
  if held[3] == r.slot[4] then return 'retry' end
  return 'conflict'
end

local function keep_seq(r)
  if not r.slot then return end
  local at = 3 * r.slot[1]
  redis.call('BITFIELD', P .. 'seqs:' .. r.device, 'SET', 'u32', '#' .. at, r.slot[2],
    'SET', 'u32', '#' .. at + 1, r.slot[3], 'SET', 'u32', '#' .. at + 2, r.slot[4])
end
"""
