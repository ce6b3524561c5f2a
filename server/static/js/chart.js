// A device's chart: its raw points while live, or over a range the average of each
// bucket with a band from its min to its max. Axes follow the chosen units.
import { DIAGNOSTICS, metricsOf, number, shown, tick, unitOf } from "./format.js";

const COLOURS = ["#d1495b", "#00798c", "#edae49", "#30638e"];

function seriesOf(device) {
  const sample = Object.assign(Object.create(null), ...(device.buckets || device.readings)); // keeps "__proto__"
  return metricsOf(sample).filter((name) => !DIAGNOSTICS.includes(name));
}

// A row's own value of a metric: one may be named "constructor", which every object inherits.
const own = (row, name) => (Object.hasOwn(row, name) ? row[name] : null);

function data(device, names) {
  if (!device.buckets) {
    const rows = device.readings;
    return [rows.map((r) => r.ts), ...names.map((name) => rows.map((r) => shown(name, own(r, name))))];
  }
  const rows = device.buckets;
  const stat = (name, key) => rows.map((b) => (own(b, name) ? shown(name, b[name][key]) : null));
  return [rows.map((b) => b.t), ...names.flatMap((name) => [stat(name, "min"), stat(name, "avg"), stat(name, "max")])];
}

function options(device, names, width) {
  const scales = [...new Set(names.map(unitOf))];
  const style = getComputedStyle(document.body); // follows the light or dark scheme
  const lines = { stroke: style.getPropertyValue("--line"), width: 1 };
  const axis = { stroke: style.color, grid: lines, ticks: lines };
  const times = { ...axis, values: (u, splits, _, __, step) => splits.map((t) => tick(t, step)) };
  const numbers = { ...axis, values: (u, splits) => splits.map((value) => number(value)), size: 50 };
  const axes = [times, ...scales.slice(0, 2).map((scale, i) => ({ ...numbers, scale, side: i ? 1 : 3, label: scale }))];
  const line = (name, i, label, alpha = "") => ({
    label, scale: unitOf(name), spanGaps: !device.buckets, stroke: COLOURS[i % 4] + alpha, points: { show: false },
  });
  if (!device.buckets) {
    return { width, height: 160, legend: { live: false }, axes, series: [{}, ...names.map((n, i) => line(n, i, n))] };
  }
  const series = names.flatMap((n, i) => [line(n, i, `${n} min`, "55"), line(n, i, n), line(n, i, `${n} max`, "55")]);
  const bands = names.map((n, i) => ({ series: [3 * i + 3, 3 * i + 1], fill: `${COLOURS[i % 4]}22` }));
  return { width, height: 160, legend: { live: false }, axes, series: [{}, ...series], bands };
}

export function draw(device) {
  if (!window.uPlot) return;
  const box = device.node.querySelector(".chart");
  const names = seriesOf(device);
  const shape = [device.buckets ? "buckets" : "points", ...names.map(unitOf), ...names].join();
  const values = data(device, names);
  if (!device.chart || device.shape !== shape) {
    device.chart?.destroy();
    device.shape = shape;
    device.chart = new uPlot(options(device, names, box.clientWidth || 300), values, box);
    device.chart.root.querySelectorAll(".u-legend .u-series").forEach((row, i) => {
      if (/ (min|max)$/.test(device.chart.series[i + 1].label)) row.style.display = "none"; // the band says it
    });
  } else {
    device.chart.setData(values);
  }
  box.dataset.points = values[0].length;
}

export function resize(device) {
  device.chart?.setSize({ width: device.node.querySelector(".chart").clientWidth, height: 160 });
}
