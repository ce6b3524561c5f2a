// Whether a card's values are current. A device's usual interval is the median gap between
// the measured times of its recent readings; silence longer than twice that, and half as long
// again as the longest gap of its last HELD readings, is stale (a board reporting
// changes at once and a steady value at each heartbeat is not stale between heartbeats,
// even after a burst of changes), but
// never within STALE_FLOOR seconds: the page ticks once a second and a reading takes a
// moment to arrive, so a device that posts many times a second is not stale while it posts
// (nor one whose clock gives many readings the same second). A metric the device stopped
// sending is stale on its own, and says how old its value is, once it lags the device's
// newest reading by more than that metric's own allowance. A device's silence counts only
// until the server last said anything: while the stream is silent or down the silence is
// the page's, not the devices', and no card is stale for it (down, each says it is out of
// touch). The card's status says which it is: "online", "stale · last seen 3 min ago",
// "offline" or "no connection · last seen 3 min ago". A card whose chart could not be
// fetched says so too, until a fetch works again.
import { ago, when } from "./format.js";
import { isDown, isLive, lastHeard } from "./stream.js";

const STALE_FLOOR = 5; // seconds
const RECENT = 20; // readings that tell the usual interval
const HELD = 500; // readings whose longest gap is a heartbeat's (four hours of the firmware's 30 s)

// Twice the median gap between the recent rows' times, and 1.5 times the longest gap of the
// last HELD (a burst of changes must not make it forget the heartbeat), at least
// STALE_FLOOR; null for too few rows.
function allowance(rows) {
  const gaps = (last) => {
    const ts = rows.slice(-last).map((row) => row.ts);
    return ts.slice(1).map((t, i) => t - ts[i]);
  };
  const recent = gaps(RECENT).sort((a, b) => a - b);
  const longest = gaps(HELD).reduce((most, gap) => Math.max(most, gap), 0);
  return recent.length ? Math.max(2 * recent[Math.floor(recent.length / 2)], 1.5 * longest, STALE_FLOOR) : null;
}

export function markStale(device, now) {
  const rows = device.readings;
  const usual = allowance(rows) ?? Infinity;
  const stale = device.online && isLive() && Math.min(now, lastHeard() + 1) - device.lastSeen > usual;
  device.node.querySelector(".metrics").classList.toggle("stale", stale);
  const status = device.node.querySelector(".status");
  const seen = `last seen ${ago(now - device.lastSeen)}`;
  status.textContent = isDown() ? `no connection · ${seen}`
    : !device.online ? "offline" : stale ? `stale · ${seen}` : "online";
  status.classList.toggle("stale", stale);
  status.classList.toggle("down", isDown());
  const newest = rows.at(-1)?.ts;
  for (const item of device.node.querySelectorAll(".metrics [data-metric]")) {
    const name = item.dataset.metric;
    const known = device.measured.has(name); // else it was sent before every reading loaded
    const last = known ? device.measured.get(name) : rows[0]?.ts;
    const own = allowance(rows.filter((row) => Object.hasOwn(row, name))) ?? usual;
    const old = newest !== undefined && (!known || newest - last > own);
    const label = item.querySelector("dt");
    label.textContent = old ? `${name} · ${known ? "" : "over "}${ago(now - last)}` : name;
    label.title = old ? `${name}: ${when(last)}` : name;
    item.classList.toggle("stale", old);
  }
}

// What keeps the card's chart from being current: an error from fetching it, or null once it worked.
export function markFailed(device, error) {
  const reason = error && (/HTTP \d+$/.exec(error.message)?.[0] ?? "no connection");
  device.node.querySelector(".chart-error").textContent = error ? `Chart not updated: ${reason}` : "";
}
