// The dashboard: a card per device (in name order), seeded from /api and kept live by
// /stream; a range (the last 15 minutes live, 1 h, 24 h, 7 d, custom: range.js), in the page's
// address, and a unit, both remembered per browser.
import { acknowledged, age, isAlerting, listAlerts, relabel, showAlert, wireThresholds } from "./js/alerts.js";
import { draw } from "./js/chart.js";
import { DIAGNOSTICS, ago, format, metricsOf, note, prefs, when } from "./js/format.js";
import { nextFrame } from "./js/frame.js";
import { followShown, label, place, remove } from "./js/labels.js";
import { redrawCompare, wireCompare, wireLarge } from "./js/overlay.js";
import { LIVE_SPAN, addToBuckets, loadRange, range, readingsUrl, showsLive, slide, thin, wireRange } from "./js/range.js";
import { markFailed, markStale } from "./js/stale.js";
import { connect, resumeAfter, toLogin } from "./js/stream.js";
import { count, countUpTo, emptyTally } from "./js/tally.js";

const CHART_POINTS = 500; // readings a card keeps, thinned past that (range.js)
const VALUES_EVERY = 100; // ms
const CHART_EVERY = 250; // ms
const ROLLUP_SLOT = 10; // seconds: the server's finest summaries of a device's readings (server/rollups.py)
const RELOAD_MS = 5000; // before loading again what the server could not give, unless it says (Retry-After)
const devices = new Map();
let held = null; // while states are reloaded: the device and alert events received meanwhile
let seeding = false; // while seed() makes the cards it loads the charts of itself
let resyncLater = null; // the next try of a resync() that failed

function card(id) {
  if (devices.has(id)) return devices.get(id);
  document.getElementById("empty")?.remove();
  const node = document.getElementById("card").content.firstElementChild.cloneNode(true);
  node.dataset.device = id;
  place(id, node, forget); // under its group's heading, by name
  // latest and measured are keyed by metric names, which may be "__proto__" or "constructor"
  const device = { id, node, lastSeen: 0, online: true, latest: Object.create(null), measured: new Map(),
    readings: [], tally: emptyTally(), buckets: null, chart: null, limits: new Map() };
  devices.set(id, device);
  const charted = () => metricsOf(device.latest).filter((name) => !DIAGNOSTICS.includes(name));
  device.showThresholds = wireThresholds(device, charted);
  wireLarge(device);
  const download = node.querySelector(".download");
  download.href = csvUrl(device);
  download.addEventListener("click", () => { download.href = csvUrl(device); }); // the range as of now
  if (!seeding) guarded(id, () => loadChart(device)); // a device new to the page: its chart of the range shown
  return device;
}

function showValues(device, reading) {
  noteDecimals(reading);
  Object.assign(device.latest, reading);
  const list = device.node.querySelector(".metrics");
  const details = [];
  for (const name of metricsOf(device.latest)) {
    const value = device.latest[name];
    if (DIAGNOSTICS.includes(name)) {
      details.push(`${name} ${format(name, value)}`);
      continue;
    }
    let item = [...list.children].find((child) => child.dataset.metric === name);
    if (!item) {
      item = document.createElement("div");
      item.dataset.metric = name;
      item.append(document.createElement("dt"), document.createElement("dd"));
      Object.assign(item.querySelector("dt"), { textContent: name, title: name });
      list.append(item);
    }
    item.querySelector("dd").textContent = format(name, value);
    item.classList.toggle("alerting", isAlerting(device.id, name));
  }
  device.node.querySelector(".details").textContent = details.join(" · ");
  showFirmware(device);
}

// The version running, the one targeted, and how the last update went (a failed one until
// another release is targeted).
function showFirmware(device) {
  const { fw, fw_target: target, fw_update: update, fw_status: status, fw_error: error } = device.latest;
  const line = device.node.querySelector(".firmware");
  const failed = status === "failed" && !(target && target !== update);
  let text = fw ? `firmware ${fw}` : "";
  if (status === "updating" && update !== fw) text += `, updating to ${update}…`;
  else if (failed) text += `; update to ${update} failed: ${error}`;
  else if (target && fw && target !== fw) text += ` (${target} is out)`;
  Object.assign(line, { textContent: text, title: text });
  line.classList.toggle("failed", failed);
}

// A release published or targeted again (`make release`): each card says which is out.
function showTargets(targets) {
  const target = new Map(Object.entries(targets)); // a device named "constructor" has none of its own
  for (const [id, device] of devices) {
    device.latest.fw_target = target.get(id) ?? target.get("*") ?? null;
    showFirmware(device);
  }
}

function setStatus(device, online) {
  device.online = online;
  device.node.classList.toggle("offline", !online);
  markStale(device, Date.now() / 1000); // says online, stale or offline
}

// What /api/devices says of a device besides its values: labels, status, last seen, firmware update.
function showState(state) {
  const device = card(state.device);
  label(state);
  device.lastSeen = Math.max(device.lastSeen, state.last_seen);
  setStatus(device, state.online);
  const { fw_target, fw_update, fw_status, fw_error } = state;
  Object.assign(device.latest, { fw_target, fw_update, fw_status, fw_error });
  showFirmware(device);
  return device;
}

function showChange(change) {
  if (change.status === "deleted") {
    forget(change.device);
  } else if (!change.status) { // new labels
    card(change.device);
    label(change);
    relabel();
  } else if (change.status === "firmware") {
    const device = card(change.device);
    Object.assign(device.latest, change);
    showFirmware(device);
  } else {
    setStatus(card(change.device), change.status !== "offline");
  }
}

// A deleted device: its card goes, and nothing of it stays active.
function forget(id) {
  devices.delete(id);
  remove(id);
  relabel(id);
}

function showAlertEvent(alert) {
  if (alert.state === "offline" || alert.state === "online") setStatus(card(alert.device), alert.state === "online");
  showAlert(alert);
}

function addReading(reading, live) {
  const device = card(reading.device);
  const rows = device.readings;
  if (rows.some((row) => row.id === reading.id)) return;
  noteDecimals(reading);
  count(device.tally, reading, metricsOf(reading));
  let at = rows.length;
  while (at > 0 && rows[at - 1].ts > reading.ts) at -= 1;
  const newest = at === rows.length;
  rows.splice(at, 0, reading);
  if (rows.length > CHART_POINTS) thin(rows);
  const { measured } = device;
  for (const name of metricsOf(reading)) measured.set(name, Math.max(measured.get(name) ?? 0, reading.ts));
  if (newest) device.fresh = Object.assign(device.fresh || Object.create(null), reading);
  if (live) {
    // Seen when the server took it (its id says when), which for a replayed reading
    // was a while ago. Whether the device is online is for `device` events to say.
    device.lastSeen = Math.max(device.lastSeen, Number(reading.id.split("-")[0]) / 1000);
    if (device.buckets) addToBuckets(device, reading, metricsOf(reading).filter((name) => !DIAGNOSTICS.includes(name)));
  }
  nextFrame(device, () => update(device), VALUES_EVERY);
}

// A reading with more decimals than its metric's figures had so far: every card writes its
// figures again, so that none shows 57 °C beside a summary's min 56.000.
function noteDecimals(reading) {
  if (note(reading)) devices.forEach((device) => nextFrame(device, () => update(device), VALUES_EVERY));
}

// A card's values as of the readings received since it was last updated, in the next frame
// but at most every VALUES_EVERY ms, its chart every CHART_EVERY ms: at hundreds of
// readings a second the page still keeps up.
function update(device) {
  showValues(device, device.fresh || {});
  device.fresh = null;
  nextFrame(device.node, () => draw(device), CHART_EVERY);
  nextFrame("compare", redrawCompare, CHART_EVERY);
}

// The CSV of the range shown.
function csvUrl(device) {
  const span = range();
  return `${readingsUrl(device)}.csv?since=${span.since}&until=${span.until}&unit=${prefs.unit}`;
}

// The newest readings, for the live chart and to tell how old each metric's value is. When
// they do not reach back over Live's span (a busy device), readings spread over the rest of
// it come too, thinned with the newest as a page left open would have them, and the
// window's summary from the server's rollups.
async function loadRecent(device) {
  const { readings } = await getJSON(`${readingsUrl(device)}?limit=${CHART_POINTS}`);
  const since = Date.now() / 1000 - LIVE_SPAN;
  if (readings.length === CHART_POINTS && readings[0].ts > since) {
    const until = Number(readings[0].id.split("-")[0]) / 1000; // when the oldest of them arrived
    const older = await getJSON(`${readingsUrl(device)}?spread&limit=${CHART_POINTS}&since=${since}&until=${until}`);
    await countOnServer(device, since);
    readings.unshift(...older.readings); // the one both give shows once (addReading)
  }
  for (const reading of readings) addReading(reading, false);
}

// The server's summary of the device's readings in the window, from its first whole
// rollup slot (a reading from before the window is never in it: the part of a slot still
// in the window is left out), to as far ahead as a board's clock may be: a bucket a slot.
async function countOnServer(device, since) {
  const from = Math.ceil(since / ROLLUP_SLOT) * ROLLUP_SLOT;
  const url = `${readingsUrl(device)}?buckets=${2 * LIVE_SPAN / ROLLUP_SLOT}&since=${from}&until=${from + 2 * LIVE_SPAN}`;
  const { buckets, newest } = await getJSON(url);
  if (newest) countUpTo(device.tally, newest, buckets); // else no rollups: the page's own readings
}

async function loadChart(device, quiet) {
  if (!(await loadRange(device, quiet))) return; // a later request's answer is drawn instead
  device.node.querySelector(".download").href = csvUrl(device);
  draw(device);
  nextFrame("compare", redrawCompare, CHART_EVERY);
}

// One device's part of the page: should it fail, that is logged and said on its card until
// it next works, and the others go on.
const guarded = (id, show) => show().then(() => null, (error) => {
  console.error(`could not show ${id}`, error);
  return error;
}).then((error) => devices.has(id) && markFailed(devices.get(id), error));

// Every device's state and chart. The stream then replays from the newest reading id
// read before the histories, so nothing falls between; a reading both ways shows once.
async function seed() {
  const answer = await fetch("/api/devices");
  if (answer.status === 401) return toLogin();
  if (!answer.ok) throw await refusal("/api/devices", answer);
  const known = await answer.json();
  resumeAfter(known.last_id);
  seeding = true; // each card is made before its function's first await
  const loads = known.devices.map((state) => guarded(state.device, async () => {
    const device = showState(state);
    showValues(device, state);
    await loadRecent(device);
    await loadChart(device);
  }));
  seeding = false;
  await Promise.all(loads);
}

async function getJSON(url) {
  const answer = await fetch(url);
  if (!answer.ok) throw await refusal(url, answer);
  return answer.json();
}

// An answer that is not ok as an error: what the server said (its JSON's "error"), and how
// long to wait before asking again (its Retry-After, as a 503 while Redis is away has).
async function refusal(url, answer) {
  const said = await answer.json().then(({ error }) => error, () => null);
  return Object.assign(new Error(`${url}: HTTP ${answer.status}${said ? ` (${said})` : ""}`), {
    said: said ?? `HTTP ${answer.status}`,
    retryAfter: 1000 * Number(answer.headers.get("Retry-After")) || RELOAD_MS,
  });
}

// seed(), again after each refusal (the server's database away) until it works, saying so
// where the cards go while there are none; any other failure is logged, not tried again.
async function seedUntilDone() {
  const empty = document.getElementById("empty");
  const welcome = empty?.innerHTML;
  for (;;) {
    try {
      await seed();
    } catch (error) {
      if (!error.retryAfter) throw error;
      console.warn("could not load the devices; trying again", error);
      if (empty) empty.textContent = `Could not load the devices: ${error.said}. Trying again in ${error.retryAfter / 1000} s.`;
      await new Promise((done) => setTimeout(done, error.retryAfter));
      continue;
    }
    if (empty) empty.innerHTML = welcome;
    return;
  }
}

// Device, alert and threshold events are not replayed: each time the stream opens, the
// devices' states, the alerts and every device's thresholds are loaded afresh while the
// events that arrive meanwhile are held, then applied in order, so the newest word wins.
async function resync() {
  const waiting = (held = []);
  const shown = [...devices.keys()]; // a card made meanwhile is of a device newer than the answer
  const loaded = await Promise.all(["/api/devices", "/api/alerts?limit=50", "/api/thresholds"].map(getJSON))
    .catch((error) => {
      console.warn("could not load the devices' states; trying again", error);
      clearTimeout(resyncLater); // one try pending, however often the stream opened meanwhile
      resyncLater = setTimeout(resync, error.retryAfter ?? RELOAD_MS);
    });
  if (held !== waiting) return; // a newer reload has begun and holds the events now
  held = null;
  if (loaded) {
    const [states, alerts, { thresholds }] = loaded;
    const present = new Set(states.devices.map((state) => state.device));
    shown.filter((id) => !present.has(id)).forEach(forget); // deleted while the stream was down
    states.devices.forEach(showState);
    listAlerts(alerts);
    for (const device of devices.values()) {
      device.limits = new Map(Object.entries(thresholds[device.id] || {}));
      showLimits(device);
    }
    redrawCompare();
  }
  waiting.forEach((apply) => apply());
}

// An event handler that applies the event's data now, or after the reload under way.
const inTurn = (apply) => (data) => {
  if (held) held.push(() => apply(data));
  else apply(data);
};

// The server no longer keeps everything since our last event: load history afresh.
async function reload() {
  for (const device of devices.values()) Object.assign(device, { readings: [], tally: emptyTally() });
  await seedUntilDone();
}

// A threshold set or removed, here or elsewhere: the card's lines and form follow.
function showLimit({ device: id, metric, limit }) {
  const device = devices.get(id);
  if (!device) return;
  if (limit) device.limits.set(metric, limit);
  else device.limits.delete(metric);
  showLimits(device);
  redrawCompare();
}

// The card's lines and form as of device.limits.
function showLimits(device) {
  device.showThresholds(true);
  draw(device);
}

function tick() {
  const now = Date.now() / 1000;
  for (const device of devices.values()) {
    const seen = device.node.querySelector(".ago");
    seen.textContent = device.lastSeen ? ago(now - device.lastSeen) : "never";
    seen.title = device.lastSeen ? when(device.lastSeen) : "";
    markStale(device, now);
  }
  age(now);
}

function redrawAll(quiet = false) {
  for (const device of devices.values()) {
    guarded(device.id, async () => {
      showValues(device, {});
      await loadChart(device, quiet);
    });
  }
}

function wireControls() {
  const unit = document.getElementById("unit");
  unit.textContent = `°${prefs.unit}`;
  wireRange(redrawAll);
  slide(() => (showsLive() ? devices.forEach(update) : redrawAll(true)));
  wireCompare(devices);
  // A form's word on what was sent ("Saved.", a refusal) goes once the form is edited again.
  document.getElementById("devices").addEventListener("input", ({ target }) => {
    const message = target.form?.querySelector(".message");
    if (message) message.textContent = "";
  });
  unit.addEventListener("click", () => {
    prefs.unit = prefs.unit === "C" ? "F" : "C";
    unit.textContent = `°${prefs.unit}`;
    devices.forEach((device) => device.showThresholds());
    redrawAll();
    resync();
  });
}

wireControls();
followShown(() => nextFrame("shown", () => {
  relabel();
  redrawCompare();
}));
seedUntilDone().catch((error) => console.error("could not load devices", error))
  .finally(() => {
    tick();
    connect(resync, {
      reading: (reading) => addReading(reading, true),
      device: inTurn(showChange),
      alert: inTurn(showAlertEvent),
      acknowledged: inTurn(acknowledged),
      thresholds: inTurn(showLimit),
      targets: inTurn(showTargets),
      reset: () => reload().catch((error) => console.error("could not reload history", error)),
    });
  });
setInterval(tick, 1000);
