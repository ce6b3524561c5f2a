// The alert list (loaded whenever the stream opens, kept live by `alert` and `acknowledged`
// events in between), the active alerts summed up above it, and each card's form for its
// thresholds, shown and entered in the viewer's units, stored in the server's.
//
// A line is an alert with its repeats folded in as the server folds them (alerts.py): the
// same device, metric and state raised again within FOLD_SECONDS of the line's newest
// moves that line to the top and counts "×N" instead of adding a line, so a value flapping
// at a limit cannot fill the list. An alert both loaded and received is counted once: an
// id no newer than its line's newest is in it already. A line's text comes last in it
// ("… kitchen went offline"), after its time, details and its Acknowledge button. Only the
// line of an alert active now is red and has that button: an alert that ended has nothing
// left to acknowledge, and its line loses the button as it ends. A hidden device's lines and
// alerts are out of sight, like its card, unless "show hidden" is ticked.
import {
  ago, decimals, format, newer, note, number, shown, shownDifference, stored, storedDifference, unitOf, when, withUnit,
} from "./format.js";
import { isShown, nameOf } from "./labels.js";

const FOLD_SECONDS = 3600;
const LINES = 50;
const SUMMED = 5; // active alerts named in the summary (a threshold's first): a night's offline fleet fills a phone
const byName = new Intl.Collator(undefined, { numeric: true }); // sim-2 before sim-10
const CROSSED = ["high", "low", "offline"]; // states that stay active until cleared or online
const active = new Map(); // JSON [device, metric or ""] -> "high" | "low" | "offline", now
const lines = new WeakMap(); // <li> -> { alert (its newest), repeats, first, acknowledged }
const list = () => document.querySelector("#alerts ul");
const activeKey = (device, metric) => JSON.stringify([device, metric ?? ""]);
const lineKey = (alert) => JSON.stringify([alert.device, alert.metric ?? "", alert.state]);
const raisedAt = (alert) => alert.raised ?? alert.ts;

// A value and its limit, as precisely as it takes to tell them apart: "26.72 °C, above 26.7 °C"
// (and as a card shows them when its decimals do).
function apart(name, value, limit) {
  const rounded = (x, digits) => number(shown(name, x), digits);
  let digits = decimals(name);
  while (rounded(value, digits) === rounded(limit, digits) && digits < 6) digits += 1;
  if (digits === decimals(name)) return [format(name, value), format(name, limit)];
  return [value, limit].map((x) => withUnit(rounded(x, digits), unitOf(name)));
}

function describe(alert) {
  const { metric, value, threshold } = alert;
  const who = nameOf(alert.device);
  const [reading, limit] = value == null ? ["", ""] : threshold == null ? [format(metric, value), ""]
    : apart(metric, value, threshold);
  if (alert.state === "cleared" && alert.reason) return `${who}: ${metric} alert ended: ${alert.reason}`;
  return {
    high: `${who}: ${metric} ${reading}, above ${limit}`,
    low: `${who}: ${metric} ${reading}, below ${limit}`,
    cleared: `${who}: ${metric} back to ${reading}`,
    offline: `${who} went offline`,
    online: `${who} is back online`,
  }[alert.state];
}

// A moment as how long ago it was ("2 min ago", kept current by age()), the time itself its title.
const stamp = (seconds) => Object.assign(document.createElement("time"), {
  textContent: ago(Date.now() / 1000 - seconds), title: when(seconds), dateTime: new Date(seconds * 1000).toISOString(),
});

// Every line's "… ago" as of now (seconds).
export function age(now) {
  for (const time of list().querySelectorAll("time")) time.textContent = ago(now - Date.parse(time.dateTime) / 1000);
}

const small = (className, ...parts) => {
  const node = Object.assign(document.createElement("small"), { className });
  node.append(...parts);
  return node;
};

function render(item) {
  const { alert, repeats, first, acknowledged } = lines.get(item);
  item.className = `${alert.state}${acknowledged ? " acknowledged" : ""}`;
  item.classList.toggle("ongoing", isOngoing(alert));
  item.dataset.id = alert.id ?? "";
  item.hidden = !isShown(alert.device);
  const parts = [stamp(raisedAt(alert))];
  if (alert.state === "offline") parts.push(small("detail", "last seen ", stamp(alert.ts)));
  if (repeats) {
    const count = small("repeats", `×${number(repeats + 1)}`);
    count.title = `raised ${number(repeats + 1)} times since ${when(first)}`;
    parts.push(count);
  }
  if (!acknowledged && isOngoing(alert)) {
    const button = Object.assign(document.createElement("button"), { type: "button", textContent: "Acknowledge" });
    button.addEventListener("click", () => acknowledge(alert, button));
    parts.push(button);
  }
  parts.push(Object.assign(document.createElement("span"), { textContent: describe(alert) }));
  item.replaceChildren(...parts);
}

async function acknowledge({ device, metric, state }, button) {
  button.disabled = true;
  const next = [...list().querySelectorAll("li:not([hidden]) button")].find((other) => other !== button &&
    button.compareDocumentPosition(other) & Node.DOCUMENT_POSITION_FOLLOWING);
  const answer = await fetch("/api/alerts/acknowledge", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(metric ? { device, metric, state } : { device, state }),
  }).catch(() => null);
  if (!answer?.ok) {
    Object.assign(button, { disabled: false, title: "Could not acknowledge it: try again." });
    return;
  }
  acknowledged({ device, metric, state });
  (next?.isConnected ? next : Object.assign(list(), { tabIndex: -1 })).focus(); // on down the list
}

// Every line of that device, metric and state was seen (an `acknowledged` event, or ours).
export function acknowledged(which) {
  for (const item of list().children) {
    const line = lines.get(item);
    if (lineKey(line.alert) === lineKey(which) && !line.acknowledged) {
      line.acknowledged = true;
      render(item);
    }
  }
}

export const isAlerting = (device, metric) => ["high", "low"].includes(active.get(activeKey(device, metric)));
const isOngoing = (alert) => active.get(activeKey(alert.device, alert.metric)) === alert.state;

function mark(device, metric) {
  document.querySelector(`[data-device="${CSS.escape(device)}"] [data-metric="${CSS.escape(metric)}"]`)
    ?.classList.toggle("alerting", isAlerting(device, metric));
}

function setActive(device, metric, state) {
  const key = activeKey(device, metric);
  CROSSED.includes(state) ? active.set(key, state) : active.delete(key);
  if (metric) mark(device, metric);
}

// "2 active: Kitchen temperature high, Shed offline", in name order; only their lines red.
function summarize() {
  for (const item of list().children) {
    if (item.classList.contains("ongoing") !== isOngoing(lines.get(item).alert)) render(item);
  }
  const named = [...active].map(([key, state]) => [...JSON.parse(key), state])
    .filter(([device]) => isShown(device))
    .map(([device, metric, state]) => [state === "offline", [nameOf(device), metric, state].filter(Boolean).join(" ")])
    .sort(([offline, a], [otherOffline, b]) => offline - otherOffline || byName.compare(a, b))
    .map(([, text]) => text);
  const summary = document.querySelector("#alerts .active");
  const more = named.length > SUMMED + 1 ? ` and ${number(named.length - SUMMED)} more` : "";
  summary.textContent = named.length
    ? `${number(named.length)} active: ${named.slice(0, more ? SUMMED : undefined).join(", ")}${more}` : "None active.";
  summary.classList.toggle("none", !named.length);
  document.getElementById("alerts").hidden = !named.length && !list().querySelector("li:not([hidden])");
}

function addLine(line, newest) {
  const { metric, value } = line.alert;
  if (metric) note({ [metric]: value }); // a reading's value: the metric's figures have its decimals
  const item = document.createElement("li");
  lines.set(item, line);
  render(item);
  list()[newest ? "prepend" : "append"](item);
  while (list().children.length > LINES) list().lastElementChild.remove();
}

// A live alert: it changes what is active, and is folded into its line or starts one.
export function showAlert(alert) {
  setActive(alert.device, alert.metric, alert.state);
  const item = [...list().children].find((child) => lineKey(lines.get(child).alert) === lineKey(alert));
  const line = item && lines.get(item);
  if (line && alert.id && line.alert.id && !newer(alert.id, line.alert.id)) return summarize();
  if (line && raisedAt(alert) - raisedAt(line.alert) <= FOLD_SECONDS) {
    if (alert.metric) note({ [alert.metric]: alert.value });
    Object.assign(line, { alert, repeats: line.repeats + 1, acknowledged: false });
    render(item);
    list().prepend(item);
  } else {
    addLine({ alert, repeats: 0, first: raisedAt(alert), acknowledged: false }, true);
  }
  summarize();
}

// Replace the list and what is active with /api/alerts' answer.
export function listAlerts({ active: now, recent }) {
  list().replaceChildren();
  recent.forEach(({ repeats, first, acknowledged: seen, ...alert }) =>
    addLine({ alert, repeats, first, acknowledged: seen }, false));
  const before = [...active.keys()].map((key) => JSON.parse(key));
  active.clear();
  before.forEach(([device, metric]) => metric && mark(device, metric));
  now.forEach(({ device, metric, state }) => setActive(device, metric, state));
  summarize();
}

// A device renamed, hidden or shown: its lines and the summary follow. Deleted: nothing of it is active.
export function relabel(deleted) {
  if (deleted) [...active.keys()].filter((key) => JSON.parse(key)[0] === deleted).forEach((key) => active.delete(key));
  for (const item of list().children) render(item);
  summarize();
}

// The device's stored limits, into device.limits (kept live by `thresholds` events).
export async function loadLimits(device) {
  const answer = await fetch(`/api/devices/${encodeURIComponent(device.id)}/thresholds`);
  if (!answer.ok) throw new Error(`${device.id}'s thresholds: HTTP ${answer.status}`);
  device.limits = new Map(Object.entries((await answer.json()).thresholds));
}

// The form shows the stored limits in the unit chosen now (show() again when it changes);
// Save sends a changed field converted to °C and an untouched one exactly as stored. The
// limits are loaded again each time it opens and after a save, and follow `thresholds`
// events (show(true)): a field the user edited meanwhile keeps what they typed. A metric
// with no limit yet offers a HYSTERESIS fit for its scale (in the unit shown), so a value
// near a new limit does not flap: 0.5 V would keep a battery's low alert from ever ending.
// A limit reads back as stored; converted (°F), to 2 decimals.
const HYSTERESIS = { temperature: 0.5, humidity: 1, pressure: 1, battery: 0.05 };
export function wireThresholds(device, metricNames) {
  const { id, node } = device;
  const details = node.querySelector(".thresholds");
  const form = details.querySelector("form");
  const say = (text) => { form.querySelector(".message").textContent = text; };
  const url = () => `/api/devices/${encodeURIComponent(id)}/thresholds/${encodeURIComponent(form.metric.value)}`;
  const fields = { low: [shown, stored], high: [shown, stored], hysteresis: [shownDifference, storedDifference] };
  const isEdited = (input) => input.value !== (input.dataset.shown ?? input.defaultValue);

  async function fill() {
    const chosen = form.metric.value;
    form.metric.replaceChildren(...metricNames().map((name) => new Option(name, name)));
    if (chosen) form.metric.value = chosen;
    await loadLimits(device);
    show(true);
  }
  function show(keepEdits = false) {
    const name = form.metric.value;
    const limit = device.limits.get(name) || {};
    form.querySelectorAll(".unit").forEach((span) => { span.textContent = unitOf(name) && `(${unitOf(name)})`; });
    for (const [field, [toShown]] of Object.entries(fields)) {
      const input = form[field];
      if (keepEdits && isEdited(input)) continue;
      const offered = field === "hysteresis" && !device.limits.has(name) ? HYSTERESIS[name] ?? "" : "";
      const value = Object.hasOwn(limit, field) && toShown(name, limit[field]);
      input.value = Object.hasOwn(limit, field) ? (value === limit[field] ? value : +value.toFixed(2)) : offered;
      input.dataset.shown = input.value;
    }
  }
  function edited() {
    const name = form.metric.value;
    const limit = device.limits.get(name) || {};
    const entries = Object.entries(fields).map(([field, [, toStored]]) => {
      const input = form[field];
      if (!isEdited(input) && Object.hasOwn(limit, field)) return [field, limit[field]];
      return [field, input.value === "" ? undefined : toStored(name, Number(input.value))];
    });
    return Object.fromEntries(entries);
  }
  details.addEventListener("toggle", () => details.open && fill());
  form.metric.addEventListener("change", () => show());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const limit = edited();
    // The server refuses it too, in these words; asked first, the refusal would be logged as an error.
    if (limit.low != null && limit.high != null && limit.low >= limit.high) {
      say("low: must be below high");
      return;
    }
    const answer = await fetch(url(), {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(limit),
    });
    say(answer.ok ? "Saved." : (await answer.json()).error);
    if (!answer.ok) return;
    Object.keys(fields).forEach((field) => { form[field].dataset.shown = form[field].value; }); // stored as typed
    fill();
  });
  form.querySelector(".clear").addEventListener("click", async () => {
    const name = form.metric.value;
    const answer = await fetch(url(), { method: "DELETE" });
    say(answer.ok ? "Cleared." : "Could not clear it.");
    if (!answer.ok) return;
    setActive(id, name, "cleared"); // no limit, no alert: the server forgets it too
    summarize();
    device.limits.delete(name);
    show();
    fill();
  });
  return show;
}
