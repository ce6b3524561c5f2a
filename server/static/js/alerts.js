// The alert list (loaded whenever the stream opens, kept live by `alert` events in
// between; an alert both loaded and received is listed once, by its id) and each card's
// form for its thresholds, shown and entered in the viewer's units, stored in the server's.
import { format, shown, shownDifference, stored, storedDifference, unitOf, when } from "./format.js";

const alerting = new Set(); // "device metric" crossed now
const list = () => document.querySelector("#alerts ul");

function describe(alert) {
  const value = alert.metric && alert.value != null ? format(alert.metric, alert.value) : "";
  const limit = alert.threshold != null ? format(alert.metric, alert.threshold) : "";
  return {
    high: `${alert.device}: ${alert.metric} ${value}, above ${limit}`,
    low: `${alert.device}: ${alert.metric} ${value}, below ${limit}`,
    cleared: `${alert.device}: ${alert.metric} back to ${value}`,
    offline: `${alert.device} went offline`,
    online: `${alert.device} is back online`,
  }[alert.state];
}

export const isAlerting = (device, metric) => alerting.has(`${device} ${metric}`);

function mark(device, metric, on) {
  on ? alerting.add(`${device} ${metric}`) : alerting.delete(`${device} ${metric}`);
  document.querySelector(`[data-device="${CSS.escape(device)}"] [data-metric="${CSS.escape(metric)}"]`)
    ?.classList.toggle("alerting", on);
}

export function showAlert(alert, newest = true) {
  if (newest && alert.metric) mark(alert.device, alert.metric, alert.state !== "cleared");
  if (alert.id && list().querySelector(`[data-id="${CSS.escape(alert.id)}"]`)) return;
  const item = document.createElement("li");
  item.className = alert.state;
  if (alert.id) item.dataset.id = alert.id;
  item.append(Object.assign(document.createElement("time"), { textContent: when(alert.ts) }), " ",
    Object.assign(document.createElement("span"), { textContent: describe(alert) }));
  list()[newest ? "prepend" : "append"](item);
  while (list().children.length > 50) list().lastElementChild.remove();
  document.getElementById("alerts").hidden = false;
}

// Replace the list and the crossed metrics with /api/alerts' answer.
export function listAlerts({ active, recent }) {
  list().replaceChildren();
  recent.forEach((alert) => showAlert(alert, false));
  [...alerting].forEach((crossed) => mark(...crossed.split(" "), false));
  active.filter((alert) => alert.metric).forEach((alert) => mark(alert.device, alert.metric, true));
}

// The form shows the stored limits in the unit chosen now (show() again when it changes);
// Save sends a changed field converted to °C and an untouched one exactly as stored.
export function wireThresholds(id, node, metricNames) {
  const details = node.querySelector(".thresholds");
  const form = details.querySelector("form");
  const say = (text) => { form.querySelector(".message").textContent = text; };
  const url = () => `/api/devices/${encodeURIComponent(id)}/thresholds/${encodeURIComponent(form.metric.value)}`;
  const fields = { low: [shown, stored], high: [shown, stored], hysteresis: [shownDifference, storedDifference] };
  let known = new Map();

  async function fill() {
    const chosen = form.metric.value;
    form.metric.replaceChildren(...metricNames().map((name) => new Option(name, name)));
    if (chosen) form.metric.value = chosen;
    const answer = await (await fetch(`/api/devices/${encodeURIComponent(id)}/thresholds`)).json();
    known = new Map(Object.entries(answer.thresholds));
    show();
  }
  function show() {
    const name = form.metric.value;
    const limit = known.get(name) || {};
    form.querySelectorAll(".unit").forEach((span) => { span.textContent = unitOf(name) && `(${unitOf(name)})`; });
    for (const [field, [toShown]] of Object.entries(fields)) {
      const value = Object.hasOwn(limit, field) ? +toShown(name, limit[field]).toFixed(2) : "";
      form[field].value = value;
      form[field].dataset.shown = form[field].value;
    }
  }
  function edited() {
    const name = form.metric.value;
    const limit = known.get(name) || {};
    const entries = Object.entries(fields).map(([field, [, toStored]]) => {
      const input = form[field];
      if (input.value === input.dataset.shown) return [field, limit[field]];
      return [field, input.value === "" ? undefined : toStored(name, Number(input.value))];
    });
    return Object.fromEntries(entries);
  }
  details.addEventListener("toggle", () => details.open && fill());
  form.metric.addEventListener("change", show);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const answer = await fetch(url(), {
      method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(edited()),
    });
    say(answer.ok ? "Saved." : (await answer.json()).error);
    if (answer.ok) fill();
  });
  form.querySelector(".clear").addEventListener("click", async () => {
    const name = form.metric.value;
    const answer = await fetch(url(), { method: "DELETE" });
    if (answer.ok) mark(id, name, false); // no limit, no alert: the server forgets it too
    say(answer.ok ? "Cleared." : "Could not clear it.");
    fill();
  });
  return show;
}
