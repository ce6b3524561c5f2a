// The range a chart shows: Live (the newest readings, each new one appended), 1 h, 24 h and
// 7 d, which slide with time (fetched again every 1/300 of their span, at least once a
// minute, with live readings added to the newest bucket in between), or a custom From–To.
// A card says it is loading while its range is fetched, and draws only the answer to its
// latest request: an older one still under way is aborted, and its answer never drawn.
import { prefs } from "./format.js";

export const BUCKETS = 300;
const SPANS = { "1h": 3600, "24h": 86400, "7d": 604800 };
const SLIDE_AT_LEAST = 60; // seconds between fetches of a sliding range, at most
const weights = new WeakMap(); // a bucket's count of readings, for live readings added to it (1 if fetched)

// The chosen range in Unix seconds, or null while live.
export function range() {
  const chosen = prefs.range;
  const now = Date.now() / 1000;
  if (chosen.name === "custom") return { since: chosen.since, until: chosen.until };
  return SPANS[chosen.name] ? { since: now - SPANS[chosen.name], until: now } : null;
}

export const readingsUrl = (device) => `/api/devices/${encodeURIComponent(device.id)}/readings`;

function loading(device, on) {
  const box = device.node.querySelector(".chart");
  box.classList.toggle("loading", on);
  box.toggleAttribute("aria-busy", on);
}

// Fetch the device's buckets for the chosen range (none while live). True when they are
// the answer to the device's latest request, to be drawn; false for a stale one. A quiet
// load (a sliding range's refresh) shows no loading state.
export async function loadRange(device, quiet = false) {
  device.request?.abort();
  const period = range();
  if (!period) {
    Object.assign(device, { request: null, buckets: null, period: null });
    loading(device, false);
    return true;
  }
  const request = (device.request = new AbortController());
  if (!quiet) loading(device, true);
  const url = `${readingsUrl(device)}?buckets=${BUCKETS}&since=${period.since}&until=${period.until}`;
  try {
    const answer = await fetch(url, { signal: request.signal });
    if (!answer.ok) throw new Error(`${url}: HTTP ${answer.status}`);
    const { buckets, width } = await answer.json();
    if (device.request !== request) return false; // a newer request has begun
    Object.assign(device, { buckets, period: { ...period, width, name: prefs.range.name } });
    return true;
  } catch (error) {
    if (error.name === "AbortError") return false;
    throw error;
  } finally {
    if (device.request === request) {
      device.request = null;
      loading(device, false);
    }
  }
}

// A live reading, while a range is shown: into the bucket its time falls in (averages are
// then close, and exact again at the next fetch), or a new one after the newest.
export function addToBuckets(device, reading, names) {
  const { buckets, period } = device;
  const t = period.since + Math.floor((reading.ts - period.since) / period.width) * period.width;
  const last = buckets.at(-1);
  if (reading.ts < period.since || (period.name === "custom" && reading.ts > period.until) || (last && t < last.t)) {
    return;
  }
  const bucket = last && last.t === t ? last : { t };
  if (bucket !== last) buckets.push(bucket);
  const weight = weights.get(bucket) ?? (bucket === last ? 1 : 0);
  for (const name of names) {
    const value = reading[name];
    const stat = Object.hasOwn(bucket, name) ? bucket[name] : { min: value, avg: value, max: value };
    const avg = stat.avg + (value - stat.avg) / (weight + 1);
    bucket[name] = { min: Math.min(stat.min, value), avg, max: Math.max(stat.max, value) };
  }
  weights.set(bucket, weight + 1);
}

// The x range a chart of the period fetched is pinned to now (null while live): a sliding
// range ends now.
export function pinned(period) {
  if (!period) return null;
  const span = SPANS[period.name];
  return span ? [Date.now() / 1000 - span, Date.now() / 1000] : [period.since, period.until];
}

// Calls reload() whenever a sliding range is due to be fetched again.
export function slide(reload) {
  let fetched = Date.now() / 1000;
  setInterval(() => {
    const span = SPANS[prefs.range.name];
    const now = Date.now() / 1000;
    if (span && now - fetched >= Math.min(span / BUCKETS, SLIDE_AT_LEAST)) {
      fetched = now;
      reload();
    }
  }, 1000);
}

// The range the charts show: the one chosen, or while live the first chart's x axis
// (chart.js writes it on the chart), or the last hour before any is drawn.
function shownRange() {
  const axis = document.querySelector(".card .chart[data-from]")?.dataset;
  const now = Date.now() / 1000;
  return range() || (axis ? { since: Number(axis.from), until: Number(axis.to) } : { since: now - 3600, until: now });
}

// The range picker: the choice is remembered; choosing Custom… fills From and To with the
// range shown, which the charts keep until either is changed; a custom From that is not
// before its To is refused with a message, and the charts keep their range until it is fixed.
export function wireRange(onChange) {
  const select = document.getElementById("range");
  const custom = document.getElementById("custom");
  const message = Object.assign(document.createElement("span"), { className: "range-message" });
  message.setAttribute("role", "alert");
  custom.append(message);
  const [from, to] = ["from", "to"].map((name) => custom.querySelector(`[name=${name}]`));
  const local = (seconds) => new Date((seconds - new Date().getTimezoneOffset() * 60) * 1000).toISOString().slice(0, 16);
  const fill = ({ since, until }) => { [from.value, to.value] = [local(since), local(until)]; };
  const chosen = prefs.range;
  select.value = chosen.name;
  custom.hidden = chosen.name !== "custom";
  if (chosen.name === "custom") fill(chosen);
  select.addEventListener("change", () => {
    custom.hidden = select.value !== "custom";
    message.textContent = "";
    if (select.value === "custom") return fill(shownRange());
    prefs.range = { name: select.value };
    onChange();
  });
  custom.addEventListener("change", () => {
    const since = Date.parse(from.value) / 1000;
    const until = Date.parse(to.value) / 1000;
    const wrong = since >= until;
    message.textContent = wrong ? "From must be before To." : "";
    [from, to].forEach((input) => input.setAttribute("aria-invalid", String(wrong)));
    if (!(since < until)) return;
    prefs.range = { name: "custom", since, until };
    onChange();
  });
}
