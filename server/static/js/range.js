// The range a chart shows: Live (the readings of the last LIVE_SPAN, each new one appended,
// on an axis that slides with time), 1 h, 24 h and 7 d, which slide with time (fetched again
// every 1/300 of their span, at least once a minute, with live readings added to the newest
// bucket in between), or a custom From–To, typed in or dragged across a chart (zoom.js).
// A card says it is loading while its range is fetched, and draws only the answer to its
// latest request: an older one still under way is aborted, and its answer never drawn.
// The range is this page's own (another tab may show another) and in its address, to share:
// ?range=1h, or ?from=…&to=… in ISO time or Unix seconds. Each choice is a new history entry
// (pushState), so Back returns to the range before; a page opened without one shows the
// range last chosen in this browser, as does one whose From and To are no range, saying why.
import { prefs } from "./format.js";
import { ZOOM } from "./zoom.js";

export const BUCKETS = 300;
export const LIVE_SPAN = 15 * 60; // seconds
const SPANS = { live: LIVE_SPAN, "1h": 3600, "24h": 86400, "7d": 604800 };
const SLIDE_AT_LEAST = 60; // seconds between fetches of a sliding range, at most

// A page address's From and To in Unix seconds, NaN for one that is no time.
function addressTimes(search) {
  const query = new URLSearchParams(search);
  const seconds = (text) => (/^\d+(\.\d+)?$/.test(text) ? Number(text) : Date.parse(text) / 1000);
  return ["from", "to"].map((name) => seconds(query.get(name) ?? ""));
}

// A range from a page address's query, or null for none. A From after its To (an address
// typed or edited by hand) is the span between them, not a range ignored.
function fromAddress(search) {
  const [since, until] = addressTimes(search).sort((a, b) => a - b);
  if (since < until) return { name: "custom", since, until };
  const named = new URLSearchParams(search).get("range");
  return Object.hasOwn(SPANS, named) ? { name: named } : null;
}

// What is wrong with an address that gives a From or a To but names no range ("" for
// nothing), as the picker says it of a From and To typed in.
function addressProblem(search) {
  const query = new URLSearchParams(search);
  if (fromAddress(search) || !(query.has("from") || query.has("to"))) return "";
  return addressTimes(search).some(Number.isNaN) ? "From and To must be times." : "From must be before To.";
}

// The page's address with the range in its query, the rest of the query kept.
function toAddress(chosen) {
  const query = new URLSearchParams(location.search);
  ["range", "from", "to"].forEach((name) => query.delete(name));
  const iso = (seconds) => new Date(seconds * 1000).toISOString().replace(".000Z", "Z");
  if (chosen.name === "custom") {
    query.set("from", iso(chosen.since));
    query.set("to", iso(chosen.until));
  } else {
    query.set("range", chosen.name);
  }
  return `?${query}`;
}

let chosen = fromAddress(location.search) ?? prefs.range;
export const showsLive = () => chosen.name === "live";

// The chosen range in Unix seconds.
export function range() {
  if (chosen.name === "custom") return { since: chosen.since, until: chosen.until };
  const now = Date.now() / 1000;
  return { since: now - SPANS[chosen.name], until: now };
}

// What a chart of the device shows: its buckets over a range, or while live its readings of
// the last LIVE_SPAN.
export function shownRows(device) {
  if (device.buckets) return device.buckets;
  const since = Date.now() / 1000 - LIVE_SPAN;
  return device.readings.filter((reading) => reading.ts >= since);
}

// A device's readings one too many: the oldest goes if it is older than Live shows, else the
// one whose neighbours are closest together (never the first nor the newest), so that a
// device sending hundreds a second keeps a chart across the whole of Live's span.
export function thin(readings) {
  const room = (i) => readings[i + 1].ts - readings[i - 1].ts;
  let at = 1;
  for (let i = 2; i < readings.length - 1; i += 1) if (room(i) < room(at)) at = i;
  readings.splice(readings[0].ts < Date.now() / 1000 - LIVE_SPAN ? 0 : at, 1);
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
  if (showsLive()) {
    Object.assign(device, { request: null, buckets: null, period: null });
    loading(device, false);
    return true;
  }
  const period = range();
  const request = (device.request = new AbortController());
  if (!quiet) loading(device, true);
  const url = `${readingsUrl(device)}?buckets=${BUCKETS}&since=${period.since}&until=${period.until}`;
  try {
    const answer = await fetch(url, { signal: request.signal });
    if (!answer.ok) throw new Error(`${url}: HTTP ${answer.status}`);
    const { buckets, width } = await answer.json();
    if (device.request !== request) return false; // a newer request has begun
    Object.assign(device, { buckets, period: { ...period, width, name: chosen.name } });
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

// A live reading, while a range is shown: into the bucket its time falls in, or a new one
// after the newest.
export function addToBuckets(device, reading, names) {
  const { buckets, period } = device;
  const t = period.since + Math.floor((reading.ts - period.since) / period.width) * period.width;
  const last = buckets.at(-1);
  if (reading.ts < period.since || (period.name === "custom" && reading.ts > period.until) || (last && t < last.t)) {
    return;
  }
  const bucket = last && last.t === t ? last : { t };
  if (bucket !== last) buckets.push(bucket);
  for (const name of names) {
    const value = reading[name];
    const stat = Object.hasOwn(bucket, name) ? bucket[name] : { min: value, avg: value, max: value, count: 0 };
    const count = stat.count + 1;
    bucket[name] = { min: Math.min(stat.min, value), avg: stat.avg + (value - stat.avg) / count, max: Math.max(stat.max, value), count };
  }
}

// The x range a chart of the period fetched (null while live) is pinned to: a sliding range
// ends now.
export function pinned(period) {
  const span = SPANS[period?.name ?? "live"];
  return span ? [Date.now() / 1000 - span, Date.now() / 1000] : [period.since, period.until];
}

// Calls reload() whenever a sliding range is due to be fetched again (Live's, drawn again).
export function slide(reload) {
  let fetched = Date.now() / 1000;
  setInterval(() => {
    const span = SPANS[chosen.name];
    const now = Date.now() / 1000;
    if (span && now - fetched >= Math.min(span / BUCKETS, SLIDE_AT_LEAST)) {
      fetched = now;
      reload();
    }
  }, 1000);
}

// The range picker: Custom… fills From and To with the range shown, which the charts keep
// until either is changed; a custom From that is not before its To is refused with a message,
// and the charts keep their range until it is fixed. A chart dragged across, and Back and
// Forward, choose a range too.
export function wireRange(onChange) {
  const select = document.getElementById("range");
  const custom = document.getElementById("custom");
  const message = Object.assign(document.createElement("span"), { className: "range-message" });
  message.setAttribute("role", "alert");
  custom.append(message);
  const [from, to] = ["from", "to"].map((name) => custom.querySelector(`[name=${name}]`));
  const local = (seconds) => new Date((seconds - new Date().getTimezoneOffset() * 60) * 1000).toISOString().slice(0, 16);
  const fill = ({ since, until }) => { [from.value, to.value] = [local(since), local(until)]; };
  const showChosen = () => {
    select.value = chosen.name;
    custom.hidden = chosen.name !== "custom";
    message.textContent = "";
    [from, to].forEach((input) => input.removeAttribute("aria-invalid"));
    if (chosen.name === "custom") fill(chosen);
  };
  const choose = (next, address = "pushState") => {
    chosen = prefs.range = next;
    history[address](history.state, "", toAddress(chosen));
    showChosen();
    onChange();
  };
  // "Live 15 min", and no wider: the header is one line at a desk.
  select.querySelector("[value=live]").textContent = `Live ${LIVE_SPAN / 60} min`;
  const [problem, given] = [addressProblem(location.search), addressTimes(location.search)];
  history.replaceState(history.state, "", toAddress(chosen));
  showChosen();
  if (problem) { // the picker shows what the address gave, and why the charts keep their range
    const unreadable = given.map(Number.isNaN);
    select.value = "custom";
    custom.hidden = false;
    message.textContent = problem;
    [from, to].forEach((input, i) => {
      input.value = unreadable[i] || Number.isNaN(new Date(given[i] * 1000).getTime()) ? "" : local(given[i]);
      input.setAttribute("aria-invalid", String(unreadable[i] || !unreadable.some(Boolean)));
    });
  }
  select.addEventListener("change", () => {
    custom.hidden = select.value !== "custom";
    message.textContent = "";
    if (select.value === "custom") return fill(range());
    choose({ name: select.value });
  });
  custom.addEventListener("change", () => {
    const since = Date.parse(from.value) / 1000;
    const until = Date.parse(to.value) / 1000;
    const wrong = since >= until;
    message.textContent = wrong ? "From must be before To." : "";
    [from, to].forEach((input) => input.setAttribute("aria-invalid", String(wrong)));
    if (!(since < until)) return;
    choose({ name: "custom", since, until });
  });
  document.addEventListener(ZOOM, ({ detail: { since, until } }) => { // in whole seconds, as an address shows them
    choose({ name: "custom", since: Math.floor(since), until: Math.ceil(until) });
  });
  window.addEventListener("popstate", () => choose(fromAddress(location.search) ?? prefs.range, "replaceState"));
}
