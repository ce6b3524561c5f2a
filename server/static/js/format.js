// The viewer's preferences (remembered per browser) and how numbers, units and times read.
const settings = JSON.parse(document.getElementById("settings").textContent);
const UNITS = new Map(settings.metrics); // a Map: a metric may be named "constructor"
const KNOWN = settings.metrics.map(([name]) => name);
const NOT_METRICS = settings.not_metrics; // a reading's fields and the server's own (readings.py)
export const DIAGNOSTICS = settings.diagnostics;

export const prefs = {
  get unit() { return localStorage.getItem("sensorcast.unit") || "C"; },
  set unit(value) { localStorage.setItem("sensorcast.unit", value); },
  get range() { return JSON.parse(localStorage.getItem("sensorcast.range") || '{"name": "live"}'); },
  set range(value) { localStorage.setItem("sensorcast.range", JSON.stringify(value)); },
};

const fahrenheit = (name) => name === "temperature" && prefs.unit === "F";
export const unitOf = (name) => (fahrenheit(name) ? "°F" : UNITS.get(name) || "");
export const shown = (name, value) => (value == null || !fahrenheit(name) ? value : (value * 9) / 5 + 32);
export const stored = (name, value) => (value == null || !fahrenheit(name) ? value : ((value - 32) * 5) / 9);

export function format(name, value) {
  const number = shown(name, value);
  return `${number.toFixed(Number.isInteger(number) ? 0 : 1)} ${unitOf(name)}`.trim();
}

const rank = (name) => (KNOWN.includes(name) ? KNOWN.indexOf(name) : KNOWN.length);
export function metricsOf(reading) {
  return Object.keys(reading).filter((name) => !NOT_METRICS.includes(name))
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

export function ago(seconds) {
  if (seconds < 60) return `${Math.max(0, Math.round(seconds))} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export const when = (seconds) => new Date(seconds * 1000).toLocaleString();

export function newer(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = (b || "0-0").split("-").map(Number);
  return am > bm || (am === bm && as > bs);
}
