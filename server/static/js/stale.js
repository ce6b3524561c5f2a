// Whether a card's values are current. A device's usual interval is the median gap between
// the measured times of its recent readings; silence longer than twice that is stale, but
// never within STALE_FLOOR seconds: the page ticks once a second and a reading takes a
// moment to arrive, so a device that posts many times a second is not stale while it posts
// (nor one whose clock gives many readings the same second). A metric the device stopped
// sending is stale on its own, and says how old its value is, once it lags the device's
// newest reading by more than that metric's own allowance. While the stream is down the
// silence is the server's, not the devices': no card is stale for it. The card's status says
// which it is: "online", "stale · last seen 3 min ago" or "offline".
import { ago, when } from "./format.js";
import { isLive } from "./stream.js";

const STALE_FLOOR = 5; // seconds
const RECENT = 20; // readings that tell the usual interval

// Twice the median gap between the rows' times, at least STALE_FLOOR; null for too few rows.
function allowance(rows) {
  const ts = rows.slice(-RECENT).map((row) => row.ts);
  const gaps = ts.slice(1).map((t, i) => t - ts[i]).sort((a, b) => a - b);
  return gaps.length ? Math.max(2 * gaps[Math.floor(gaps.length / 2)], STALE_FLOOR) : null;
}

export function markStale(device, now) {
  const rows = device.readings;
  const usual = allowance(rows) ?? Infinity;
  const stale = device.online && isLive() && now - device.lastSeen > usual;
  device.node.querySelector(".metrics").classList.toggle("stale", stale);
  const status = device.node.querySelector(".status");
  status.textContent = !device.online ? "offline" : stale ? `stale · last seen ${ago(now - device.lastSeen)}` : "online";
  status.classList.toggle("stale", stale);
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
