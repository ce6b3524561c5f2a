// The viewer's preferences (remembered per browser) and how numbers, units and times read:
// every number and date on the page is formatted here, in the browser's locale.
const settings = JSON.parse(document.getElementById("settings").textContent);
const UNITS = new Map(settings.metrics); // a Map: a metric may be named "constructor"
const KNOWN = settings.metrics.map(([name]) => name);
const NOT_METRICS = settings.not_metrics; // a reading's fields and the server's own (readings.py)
export const DIAGNOSTICS = settings.diagnostics;
const LOCALE = navigator.language;

export const prefs = {
  get unit() { return localStorage.getItem("sensorcast.unit") || "C"; },
  set unit(value) { localStorage.setItem("sensorcast.unit", value); },
  get range() { return JSON.parse(localStorage.getItem("sensorcast.range") || '{"name": "live"}'); },
  set range(value) { localStorage.setItem("sensorcast.range", JSON.stringify(value)); },
  // "<device>/<metric>" -> whether its card's chart shows it, as last switched in a legend
  get charted() { return JSON.parse(localStorage.getItem("sensorcast.charted") || "{}"); },
  set charted(value) { localStorage.setItem("sensorcast.charted", JSON.stringify(value)); },
};

// Temperatures are stored in °C; a limit converts with its offset, a difference without.
const fahrenheit = (name, unit = prefs.unit) => name === "temperature" && unit === "F";
export const unitOf = (name) => (fahrenheit(name) ? "°F" : UNITS.get(name) || "");
export const shown = (name, value, unit = prefs.unit) =>
  (value == null || !fahrenheit(name, unit) ? value : (value * 9) / 5 + 32);
export const shownDifference = (name, value) => (fahrenheit(name) ? (value * 9) / 5 : value);
// A limit typed in °F is stored to STORED_DECIMALS decimals of °C: no long tail, and back in
// °F it still reads as typed (to 2 decimals: 70 °F is 21.111 °C, which is 69.9998 °F).
const STORED_DECIMALS = 3;
const toStored = (value) => Math.round(value * 10 ** STORED_DECIMALS) / 10 ** STORED_DECIMALS;
export const stored = (name, value) => (value == null || !fahrenheit(name) ? value : toStored(((value - 32) * 5) / 9));
export const storedDifference = (name, value) => (fahrenheit(name) ? toStored((value * 5) / 9) : value);

const formats = new Map(); // Intl formatters by their options: made once, used often
function formatter(kind, options) {
  const key = kind.name + JSON.stringify(options);
  if (!formats.has(key)) formats.set(key, new kind(LOCALE, options));
  return formats.get(key);
}

// Past this magnitude a number's digits would overflow a card on a phone: 1.235E16.
const HUGE = 1e12;
export const number = (value, most = 3, least = 0) =>
  Math.abs(value) >= HUGE
    ? formatter(Intl.NumberFormat, { notation: "scientific", maximumFractionDigits: 3 }).format(value)
    : formatter(Intl.NumberFormat, { maximumFractionDigits: most, minimumFractionDigits: least, signDisplay: "negative" })
      .format(value); // a tiny negative shown as 0.000, not -0.000

// A metric's figures (values, averages, thresholds) all have the same decimals:
// the most that its readings so far have had, at most MOST_DECIMALS. A value converted to
// °F counts with no more than its source's decimals, or one: 21.3 °C is 70.3 °F, not 70.34.
const MOST_DECIMALS = 3;
const seen = new Map(); // "unit metric" -> the most decimals a reading of the metric had in that unit
const decimalsOf = (value) => {
  let digits = 0;
  while (digits < MOST_DECIMALS && Math.abs(value * 10 ** digits - Math.round(value * 10 ** digits)) > 1e-6) digits += 1;
  return digits;
};
export function note(reading) {
  let grown = false; // whether a metric's figures now have more decimals than before
  for (const name of metricsOf(reading)) {
    const value = reading[name];
    if (typeof value !== "number") continue;
    const source = decimalsOf(value);
    for (const unit of ["C", "F"]) {
      const digits = Math.min(decimalsOf(shown(name, value, unit)), Math.max(source, 1));
      const key = `${unit} ${name}`;
      if (digits > (seen.get(key) ?? 0)) {
        seen.set(key, digits);
        grown = true;
      }
    }
  }
  return grown;
}
export const decimals = (name) => seen.get(`${prefs.unit} ${name}`) ?? 0;
export const figure = (name, value) => number(shown(name, value), decimals(name), decimals(name));

// A figure and its unit, never apart on two lines.
export const withUnit = (text, unit) => `${text}\u00a0${unit}`.trim();

// A value as a card shows it, with the unit.
export const format = (name, value) => withUnit(figure(name, value), unitOf(name));

const rank = (name) => (KNOWN.includes(name) ? KNOWN.indexOf(name) : KNOWN.length);
export function metricsOf(reading) {
  return Object.keys(reading).filter((name) => !NOT_METRICS.includes(name))
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

export function ago(seconds) {
  if (seconds < 60) return `${number(Math.max(0, Math.round(seconds)))} s ago`;
  if (seconds < 3600) return `${number(Math.round(seconds / 60))} min ago`;
  if (seconds < 172800) return `${number(Math.round(seconds / 3600))} h ago`;
  return `${number(Math.round(seconds / 86400))} d ago`;
}

// Every time on the page reads alike, on the chart axes' 24-hour clock in the page's locale.
const date = (seconds, options) => formatter(Intl.DateTimeFormat, options).format(new Date(seconds * 1000));
const CLOCK = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
const DAY = { month: "numeric", day: "numeric" };

// A moment to the second, with its date only when that is not today ("17:08:40",
// "28/11, 17:08:40"), and its year only when that is not this year.
export function when(seconds) {
  const then = new Date(seconds * 1000);
  const today = new Date();
  const time = { ...CLOCK, second: "2-digit" };
  if (then.toDateString() === today.toDateString()) return date(seconds, time);
  const year = then.getFullYear() === today.getFullYear() ? {} : { year: "numeric" };
  return date(seconds, { ...year, ...DAY, ...time });
}

// A chart's time axis, short enough for a narrow card: the finer its step, the more of the
// time each label says ("14:30", "14:30:15"); a day's label, and midnight's, is its date
// ("29/11" or "11/29").
export function tick(seconds, step) {
  const midnight = new Date(seconds * 1000).setHours(0, 0, 0, 0) === seconds * 1000;
  if (step >= 86400 || (midnight && step >= 3600)) return date(seconds, DAY);
  return date(seconds, step < 60 ? { ...CLOCK, second: "2-digit" } : CLOCK);
}

export function newer(a, b) {
  const [am, as] = a.split("-").map(Number);
  const [bm, bs] = (b || "0-0").split("-").map(Number);
  return am > bm || (am === bm && as > bs);
}
