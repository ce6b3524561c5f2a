// A card's chart: its raw points while live, or over a range the average of each bucket in a
// band from its min to its max, pinned to that range; the device's thresholds as lines; and
// under it the min, average and max of each metric over what it shows. The same chart opens
// large (overlay.js) and is kept live there too. Each unit has its own axis, and so has each
// metric of no known unit; a card with more than two shows those on its first two at first,
// and the others when clicked in its legend, which the browser remembers. A range with
// nothing in it keeps the card's metrics in the legend and on axes, and the card its height.
import { loadLimits } from "./alerts.js";
import { DIAGNOSTICS, decimals, figure, format, metricsOf, prefs, shown, unitOf } from "./format.js";
import { COLOURS, plot, plotOptions, withGaps } from "./plot.js";
import { pinned, shownRows } from "./range.js";
import { bucketTotals, totals } from "./tally.js";

export const CHART_HEIGHT = 260;
const NO_READINGS = "No readings in this range";
const FIRST_AXES = 2; // the axes a card's metrics are shown on until one is switched in its legend
const watched = new WeakSet(); // the devices whose chart follows their card's width and has their limits

// The metrics a chart draws: all but the diagnostics, of what it shows (an object made with
// no prototype keeps a metric named "__proto__").
const charted = (sample) => metricsOf(sample).filter((name) => !DIAGNOSTICS.includes(name));
export const chartedNames = (device) => charted(Object.assign(Object.create(null), ...shownRows(device)));

// The axis a metric is drawn on: its unit's, or for a metric of no known unit its own.
export const axisOf = (name) => unitOf(name) || name;

// Whether the card's chart shows each metric: as last switched in its legend, else while
// its axis is one of the first FIRST_AXES.
const choose = (device, name, show) => { prefs.charted = { ...prefs.charted, [`${device.id}/${name}`]: show }; };
function showing(device, names) {
  const choices = prefs.charted;
  const first = [...new Set(names.map(axisOf))].slice(0, FIRST_AXES);
  return names.map((name) => choices[`${device.id}/${name}`] ?? first.includes(axisOf(name)));
}

// A row's own value of a metric (one may be named "constructor", which every object
// inherits), or undefined: a reading without it is spanned, not a gap.
const own = (row, name) => (Object.hasOwn(row, name) ? row[name] : undefined);
const stat = (bucket, name, key) => own(bucket, name)?.[key];

// One metric of the device over what its chart shows, in the unit shown: times and values
// (a bucket's average).
export function seriesOf(device, name, rows = shownRows(device)) {
  const value = device.buckets ? (row) => stat(row, name, "avg") : (row) => own(row, name);
  return { xs: rows.map((row) => row.t ?? row.ts), column: rows.map((row) => shown(name, value(row))) };
}

function chartData(device) {
  const measured = chartedNames(device);
  const names = measured.length ? measured : charted(device.latest); // none in the range: the legend and axes stay
  const shows = showing(device, names);
  const described = (name, i) => ({ unit: unitOf(name), axis: axisOf(name), digits: decimals(name),
    colour: COLOURS[i % COLOURS.length], show: shows[i] });
  if (!device.buckets) {
    const specs = names.map((name, i) => ({ label: name, ...described(name, i) }));
    const rows = shownRows(device);
    return { names, specs, xs: rows.map((r) => r.ts), columns: names.map((n) => seriesOf(device, n, rows).column) };
  }
  const specs = names.flatMap((name, i) => [
    { label: `${name} min`, band: "min" }, { label: name, spread: true }, { label: `${name} max`, band: "max" },
  ].map((spec) => ({ ...spec, ...described(name, i) })));
  const columns = names.flatMap((name) => ["min", "avg", "max"]
    .map((key) => device.buckets.map((bucket) => shown(name, stat(bucket, name, key)))));
  return { names, specs, xs: device.buckets.map((bucket) => bucket.t), columns };
}

export function limitsOf(device, names) {
  return names.flatMap((name) => {
    const limit = device.limits.get(name) || {};
    return ["low", "high"].filter((side) => limit[side] != null).map((side) => ({
      axis: axisOf(name), value: shown(name, limit[side]),
      label: `${names.length > 1 ? `${name} ` : ""}${side} ${format(name, limit[side])}`,
    }));
  });
}

// Min, average and max of each metric over the range shown: of every reading in it, those
// a busy device's live chart left out too (tally.js).
function summarise(device, names) {
  const box = device.node.querySelector(".chart");
  let summary = device.node.querySelector(".summary");
  if (!summary) {
    summary = Object.assign(document.createElement("p"), { className: "summary" });
    box.after(summary);
  }
  const all = device.buckets ? bucketTotals(device.buckets) : totals(device.tally);
  const lines = names.map((name) => {
    const total = all.get(name);
    const line = Object.assign(document.createElement("span"), {
      textContent: !total ? `${name}: none in this range`
        : `${name}: min\u00a0${figure(name, total.min)} · avg\u00a0${figure(name, total.sum / total.count)} · `
          + `max\u00a0${format(name, total.max)}`, // each figure on a line with its word and unit
    });
    line.dataset.summary = name;
    return line;
  });
  if (summary.textContent !== lines.map((line) => line.textContent).join("")) summary.replaceChildren(...lines);
}

function drawInto(device, into, box, height, onTimes) {
  const { names, specs, xs, columns } = chartData(device);
  const shape = [device.buckets ? "buckets" : "points", ...specs.map((spec) => spec.unit + spec.digits + spec.show),
    ...names].join(); // a metric switched in the legend remakes the chart and its enlarged view
  const options = () => plotOptions({
    specs, width: box.clientWidth || 300, height, pinned: () => pinned(device.period), limits: () => limitsOf(device, names),
    onTimes, onShow: (spec, show) => choose(device, spec.label, show),
  });
  const chart = plot(into, shape, options, withGaps(xs, columns), box);
  return { chart, names, xs };
}

export function draw(device) {
  if (!window.uPlot) return;
  if (!watched.has(device)) {
    watched.add(device);
    watchWidth(device);
    loadLimits(device).then(() => draw(device)) // drawn as lines, then kept live by `thresholds` events
      .catch((error) => console.error(`could not load ${device.id}'s thresholds`, error));
  }
  const box = device.node.querySelector(".chart");
  // The x axis, for tests.
  const showTimes = ({ min, max }) => Object.assign(box.dataset, { from: min, to: max });
  const { chart, names, xs } = drawInto(device, device.chart, box, CHART_HEIGHT, showTimes);
  device.chart = chart;
  Object.assign(box.dataset, { points: xs.length, range: device.period?.name ?? "live" });
  sayIfEmpty(box, !xs.length);
  summarise(device, names);
  if (device.large) device.large.chart = drawInto(device, device.large.chart, device.large.box, device.large.height).chart;
}

// Over a chart with nothing to draw, a word why.
function sayIfEmpty(box, empty) {
  const note = box.querySelector(".no-readings");
  if (!empty) note?.remove();
  else if (!note) box.append(Object.assign(document.createElement("p"), { className: "no-readings", textContent: NO_READINGS }));
}

// The chart as wide as its card, which follows the window and the cards around it (groups
// flow side by side); resized in the next frame, after the layout settled.
function watchWidth(device) {
  const box = device.node.querySelector(".chart");
  const resize = () => device.chart?.setSize({ width: box.clientWidth, height: CHART_HEIGHT });
  new ResizeObserver(() => requestAnimationFrame(resize)).observe(box);
}
