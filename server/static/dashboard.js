// The dashboard: cards seeded from /api, kept live by /stream, charts drawn by uPlot.
"use strict";

const { metrics, diagnostics } = JSON.parse(document.getElementById("settings").textContent);
const units = Object.fromEntries(metrics);
const NOT_METRICS = ["device", "boot", "fw", "seq", "ts", "id", "last_seen", "online"];
const CHART_POINTS = 500;
const devices = new Map();
const RETRY_MS = 3000;
let lastEventId = "";
let retryDelay = RETRY_MS;

function newer(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = (b || "0-0").split("-").map(Number);
  return am > bm || (am === bm && as > bs);
}

const KNOWN = metrics.map(([name]) => name);
const rank = (name) => (KNOWN.includes(name) ? KNOWN.indexOf(name) : KNOWN.length);

function metricsOf(reading) {
  return Object.keys(reading).filter((name) => !NOT_METRICS.includes(name))
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

function format(name, value) {
  const digits = Number.isInteger(value) ? 0 : 1;
  return `${value.toFixed(digits)} ${units[name] || ""}`.trim();
}

function ago(seconds) {
  if (seconds < 60) return `${Math.max(0, Math.round(seconds))} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

function card(id) {
  if (devices.has(id)) return devices.get(id);
  document.getElementById("empty")?.remove();
  const node = document.getElementById("card").content.firstElementChild.cloneNode(true);
  node.dataset.device = id;
  node.querySelector(".name").textContent = id;
  document.getElementById("devices").append(node);
  const device = { node, lastSeen: 0, readings: [], chart: null, series: [] };
  devices.set(id, device);
  return device;
}

function showValues(device, reading) {
  const list = device.node.querySelector(".metrics");
  for (const name of metricsOf(reading)) {
    let item = list.querySelector(`[data-metric="${name}"]`);
    if (!item) {
      item = document.createElement("div");
      item.dataset.metric = name;
      item.classList.toggle("diagnostic", diagnostics.includes(name));
      item.innerHTML = "<dt></dt><dd></dd>";
      item.querySelector("dt").textContent = name;
      list.append(item);
    }
    item.querySelector("dd").textContent = format(name, reading[name]);
  }
}

function setStatus(device, online) {
  const status = device.node.querySelector(".status");
  status.textContent = online ? "online" : "offline";
  status.classList.toggle("offline", !online);
}

function chartData(device) {
  const rows = device.readings;
  return [rows.map((r) => r.ts), ...device.series.map((name) => rows.map((r) => r[name] ?? null))];
}

function drawChart(device) {
  if (!window.uPlot) return;
  const series = metricsOf(Object.assign({}, ...device.readings)).filter((n) => !diagnostics.includes(n));
  const box = device.node.querySelector(".chart");
  if (!device.chart || series.join() !== device.series.join()) {
    device.chart?.destroy();
    device.series = series;
    const scales = [...new Set(series.map((name) => units[name] || name))];
    device.chart = new uPlot({
      width: box.clientWidth || 300, height: 160, legend: { live: false },
      series: [{}, ...series.map((name, i) => ({
        label: name, scale: units[name] || name, spanGaps: true,
        stroke: ["#d1495b", "#00798c", "#edae49", "#30638e"][i % 4] }))],
      axes: [{}, ...scales.slice(0, 2).map((scale, i) => ({ scale, side: i ? 1 : 3, size: 45 }))],
    }, chartData(device), box);
  } else {
    device.chart.setData(chartData(device));
  }
}

function addReading(reading, live) {
  const device = card(reading.device);
  const rows = device.readings;
  if (rows.some((row) => row.id === reading.id)) return;
  let at = rows.length;
  while (at > 0 && rows[at - 1].ts > reading.ts) at -= 1;
  rows.splice(at, 0, reading);
  if (rows.length > CHART_POINTS) rows.splice(0, rows.length - CHART_POINTS);
  if (at === rows.length - 1 || !live) showValues(device, rows[rows.length - 1]);
  if (live) {
    device.lastSeen = Date.now() / 1000;
    setStatus(device, true);
    drawChart(device);
  }
}

// Every device's state and recent history. The stream then replays from the newest
// reading id read before the histories, so nothing falls between the two; a reading
// that comes both ways is shown once.
async function seed() {
  const answer = await fetch("/api/devices");
  if (answer.status === 401) return toLogin();
  const known = await answer.json();
  if (known.last_id && newer(known.last_id, lastEventId)) lastEventId = known.last_id;
  for (const state of known.devices) {
    const device = card(state.device);
    device.lastSeen = state.last_seen;
    setStatus(device, state.online);
    showValues(device, state);
    const history = await (await fetch(`/api/devices/${state.device}/readings?limit=${CHART_POINTS}`)).json();
    for (const reading of history.readings) addReading(reading, false);
    showValues(device, state);
    drawChart(device);
  }
}

function toLogin() {
  window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname)}`);
}

// The server no longer keeps everything since our last event: load history afresh.
async function reload() {
  for (const device of devices.values()) device.readings = [];
  await seed();
}

function retryLater() {
  setTimeout(connect, retryDelay * (0.5 + Math.random()));
  retryDelay = Math.min(retryDelay * 2, 60000);
}

function connect() {
  const indicator = document.getElementById("connection");
  const query = lastEventId ? `?lastEventID=${encodeURIComponent(lastEventId)}` : "";
  const source = new EventSource(`/stream${query}`);
  source.onopen = () => {
    retryDelay = RETRY_MS;
    indicator.textContent = "live";
    indicator.className = "connection live";
  };
  source.onerror = () => {
    indicator.textContent = "reconnecting…";
    indicator.className = "connection reconnecting";
    // A refusal (503 or 429 while the server is full, 401 when the login ended) closes an
    // EventSource for good: open a new one after a growing, jittered delay, so a crowd
    // does not return at once; or log in again.
    if (source.readyState === EventSource.CLOSED) {
      fetch("/api/devices", { method: "HEAD" })
        .then((answer) => (answer.status === 401 ? toLogin() : retryLater()), retryLater);
    }
  };
  source.addEventListener("reading", (event) => {
    lastEventId = event.lastEventId || lastEventId;
    addReading({ ...JSON.parse(event.data), id: event.lastEventId }, true);
  });
  source.addEventListener("reset", () => {
    reload().catch((error) => console.error("could not reload history", error));
  });
  source.addEventListener("device", (event) => {
    const change = JSON.parse(event.data);
    setStatus(card(change.device), change.status !== "offline");
  });
}

function tick() {
  const now = Date.now() / 1000;
  for (const device of devices.values()) {
    device.node.querySelector(".ago").textContent = device.lastSeen ? ago(now - device.lastSeen) : "never";
  }
}

seed().catch((error) => console.error("could not load devices", error)).finally(connect);
setInterval(tick, 1000);
window.addEventListener("resize", () => devices.forEach((d) => d.chart?.setSize({ width: d.node.querySelector(".chart").clientWidth, height: 160 })));
