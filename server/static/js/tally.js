// Live's min, average and max of every reading in the window, where a busy device's chart
// keeps only some of them (range.js, thin): each reading is counted as it comes, in a slot
// of its second, and a page opened on a busy device takes what was stored before it opened
// from the server's rollups, as of a reading id, adding only the readings after that. A
// reading leaves the figures with its slot, as it leaves the chart.

import { LIVE_SPAN } from "./range.js";

// A device's tally: its slots by start (Unix seconds), each a Map of metric to
// { count, sum, min, max }; readings stored up to the id `after` are in the server's slots.
export const emptyTally = () => ({ slots: new Map(), after: null });

// The start of Live's window, in whole seconds.
const windowStart = () => Math.floor(Date.now() / 1000 - LIVE_SPAN);

// Whether stream id a ("ms-seq") is later than b: a device's readings are in one stream.
const later = (a, b) => {
  const [[am, as], [bm, bs]] = [a, b].map((id) => id.split("-").map(Number));
  return am > bm || (am === bm && as > bs);
};

// A reading of the window into its second's slot. A new slot drops those gone out of the
// window first (in the order they came, which is time's but for late readings): a page in
// a hidden tab draws nothing, and would otherwise keep every second of the night.
export function count(tally, reading, names) {
  const since = windowStart();
  if (reading.ts < since || (tally.after && !later(reading.id, tally.after))) return;
  const start = Math.floor(reading.ts);
  if (!tally.slots.has(start)) {
    for (const old of tally.slots.keys()) {
      if (old >= since) break;
      tally.slots.delete(old);
    }
    tally.slots.set(start, new Map());
  }
  const slot = tally.slots.get(start);
  for (const name of names) {
    const value = reading[name];
    if (typeof value === "number") add(slot, name, { count: 1, sum: value, min: value, max: value });
  }
}

// The server's buckets of the device's readings (`count`, `avg`, `min`, `max` of each
// metric) stored up to the reading `newest`, in place of the page's own: the page then
// adds only the readings after it.
export function countUpTo(tally, newest, buckets) {
  tally.slots.clear();
  for (const bucket of buckets) {
    const slot = new Map();
    for (const [name, stat] of statsOf(bucket)) add(slot, name, stat);
    tally.slots.set(bucket.t, slot);
  }
  tally.after = newest;
}

// Each metric's { count, sum, min, max } over Live's window; older slots go.
export function totals(tally) {
  const since = windowStart();
  const all = new Map();
  for (const [start, slot] of tally.slots) {
    if (start < since) tally.slots.delete(start);
    else for (const [name, stat] of slot) add(all, name, stat);
  }
  return all;
}

// Each metric's { count, sum, min, max } over a range's buckets.
export function bucketTotals(buckets) {
  const all = new Map();
  for (const bucket of buckets) for (const [name, stat] of statsOf(bucket)) add(all, name, stat);
  return all;
}

// A bucket's metrics and their { count, sum, min, max }, from its count, avg, min and max.
const statsOf = ({ t, ...stats }) => Object.entries(stats)
  .map(([name, { count, avg, min, max }]) => [name, { count, sum: avg * count, min, max }]);

// Into `stats`' own figures of the metric (made here, so changed in place: a card of a busy
// device sums hundreds of slots a few times a second).
function add(stats, name, { count, sum, min, max }) {
  const stat = stats.get(name);
  if (!stat) {
    stats.set(name, { count, sum, min, max });
    return;
  }
  stat.count += count;
  stat.sum += sum;
  stat.min = Math.min(stat.min, min);
  stat.max = Math.max(stat.max, max);
}
