"""Which keys go together: all of them in one Redis, a shard's in a Redis Cluster.

The ingest script touches a device's own keys and the keys every device shares (the
firehose ``readings``, the ``devices`` index, ``tokens``, ``alerts``, ``metrics``…) in
one call, and a cluster runs a script only on keys of one hash slot. So in a cluster the
devices are split into a fixed number of shards (``REDIS_SHARDS``), each with its own
copy of the shared keys, and every key of a shard starts with the shard's hash tag
(``{s0-52}readings``, ``{s0-52}device:kitchen``). A device's shard follows from its id
alone, so every process finds it without asking. In one Redis there is one shard with
no tag: the key names are the ones the README has always documented.

The shard count is fixed for the life of the data: a device's keys are where its
shard says. Each tag is picked so that shard *i* of *n* lies in the *i*-th *n*-th of the
slot range, so that ``redis-cli --cluster create``'s even split of the slots over the
primaries spreads the shards evenly too.
"""
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

MAX_SHARDS = 256  # each shard's tag is found in its 1/256 of the slot range at least


class Shards:
    def __init__(self, count=None):
        """``count`` shards with a hash tag each; None: one Redis's single, untagged one."""
        self.prefixes = ("",) if count is None else tuple(_tag(i, count) for i in range(count))

    def index(self, device):
        """The number of ``device``'s shard."""
        return zlib.crc32(device.encode()) % len(self.prefixes) if len(self.prefixes) > 1 else 0

    def prefix(self, device):
        """The hash tag that starts the names of ``device``'s keys."""
        return self.prefixes[self.index(device)]

    def key(self, device, name):
        """The key ``name`` (``device:kitchen``, or a shared one: ``readings``) in ``device``'s shard."""
        return self.prefix(device) + name

    @property
    def home(self):
        """The tag of keys of no device that a script uses together (a login attempt's)."""
        return self.prefixes[0]

    def each(self, name):
        """The key ``name`` of every shard."""
        return [prefix + name for prefix in self.prefixes]


ONE_REDIS = Shards()


def shards_of(client):
    """How the keys are split on the Redis that ``client`` talks to (store.client_for
    notes it on a cluster's client)."""
    return getattr(client, "shards", ONE_REDIS)


def _tag(index, count):
    low, high = index * REDIS_CLUSTER_HASH_SLOTS // count, (index + 1) * REDIS_CLUSTER_HASH_SLOTS // count
    return next(tag for tag in (f"{{s{index}-{n}}}" for n in range(100_000)) if low <= key_slot(tag.encode()) < high)


# The first lines of each script that touches a shard's keys: it is called with the shard's
# tag as its one key (KEYS[1], which routes the call in a cluster), and names each key
# ``P .. name``. Such a script writes numbers with ``exact(number)``: the fewest digits (14 to
# 17) that read back as the same double (cjson writes 14, ``%.17g`` noise like 0.10000000000000001).
LUA_PREFIX = """local P = KEYS[1]
local function exact(number)
  for digits = 14, 17 do
    local text = string.format('%.' .. digits .. 'g', number)
    if tonumber(text) == number then return text end
  end
end
"""
