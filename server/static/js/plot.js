// What every chart on the page shares (a card's, its enlarged view, the compare view): a time
// axis and one value axis per unit in the page's locale, an x range pinned to the chosen range
// (a single point gets some room around it), breaks longer than a few intervals drawn as
// gaps, a readout of the time and each series' value under the cursor, and threshold lines.
import { number, tick, when, withUnit } from "./format.js";

export const COLOURS = ["#d1495b", "#00798c", "#edae49", "#30638e", "#8f2d56", "#5b8e7d"];
const LONE_POINT_ROOM = 300; // seconds either side of the only time there is
const GAP = 3; // a break longer than this many usual intervals is a gap
const TIME_SPACE = 90; // px from one time on the axis to the next: room for "12:00:00 AM" and a gap

// Rows (xs and one column per series) with a null row wherever the time between two rows is
// more than GAP times the median interval: uPlot breaks its line at a null (spanGaps false)
// and spans an undefined (a metric that one reading did not carry).
export function withGaps(xs, columns) {
  const steps = xs.slice(1).map((x, i) => x - xs[i]).filter((step) => step > 0).sort((a, b) => a - b);
  if (steps.length < 2) return [xs, ...columns];
  const usual = steps[Math.floor(steps.length / 2)];
  const rows = [[], ...columns.map(() => [])];
  xs.forEach((x, i) => {
    if (i && x - xs[i - 1] > GAP * usual) {
      rows[0].push(xs[i - 1] + usual);
      columns.forEach((_, c) => rows[c + 1].push(null));
    }
    rows[0].push(x);
    columns.forEach((column, c) => rows[c + 1].push(column[i]));
  });
  return rows;
}

function timeRange(pinned) {
  return (u) => {
    const range = pinned();
    if (range) return range;
    const [first, last] = [u.data[0][0], u.data[0].at(-1)]; // uPlot widens a lone point's time by years
    if (first == null) return [Date.now() / 1000 - 3600, Date.now() / 1000];
    return first === last ? [first - LONE_POINT_ROOM, last + LONE_POINT_ROOM] : [first, last];
  };
}

// A value axis holds its data and the unit's threshold lines, with some room around them.
function valueRange(unit, limits) {
  return (u, min, max) => {
    const values = limits().filter((limit) => limit.unit === unit).map((limit) => limit.value);
    if (min != null) values.push(min, max);
    if (!values.length) return [0, 1];
    return uPlot.rangeNum(Math.min(...values), Math.max(...values), 0.1, true);
  };
}

const say = (value, unit) => (value == null ? "–" : withUnit(number(value, 2), unit));

// A box by the cursor that reads out the time and each drawn series' value there (a band's
// middle line with the band's ends: "21.5 °C (20–23)").
function readout(specs) {
  let box;
  const line = (label, text, colour) => {
    const row = document.createElement("div");
    const key = Object.assign(document.createElement("span"), { className: "key", textContent: label });
    key.style.borderColor = colour;
    row.append(key, " ", Object.assign(document.createElement("b"), { textContent: text }));
    return row;
  };
  return {
    hooks: {
      init: (u) => { box = u.over.appendChild(Object.assign(document.createElement("div"), { className: "readout" })); },
      setCursor: (u) => {
        const { idx, left } = u.cursor;
        box.hidden = idx == null || u.data[0][idx] == null;
        if (box.hidden) return;
        const rows = [Object.assign(document.createElement("time"), { textContent: when(u.data[0][idx]) })];
        specs.forEach((spec, i) => {
          if (spec.band) return;
          const [low, value, high] = [u.data[i][idx], u.data[i + 1][idx], u.data[i + 2]?.[idx]];
          let text = say(value, spec.unit);
          if (spec.spread && low != null && high != null) text += ` (${number(low, 2)}–${number(high, 2)})`;
          rows.push(line(spec.label, text, spec.colour));
        });
        box.replaceChildren(...rows);
        const after = left + 12; // right of the cursor, or left of it where that does not fit
        const fits = after + box.offsetWidth <= u.over.clientWidth;
        box.style.left = `${fits ? after : Math.max(-u.over.offsetLeft, left - 12 - box.offsetWidth)}px`;
      },
    },
  };
}

// A dashed line across the plot at each limit, labelled ("high 25 °C").
function thresholdLines(limits) {
  let drawn = new Map();
  return {
    hooks: {
      draw: (u) => {
        const now = new Map(limits().map((limit) => [`${limit.unit} ${limit.label}`, limit]));
        for (const [key, node] of drawn) if (!now.has(key)) node.remove();
        drawn = new Map([...now].map(([key, limit]) => {
          const node = drawn.get(key) || u.over.appendChild(Object.assign(document.createElement("div"), {
            className: "threshold", textContent: limit.label,
          }));
          node.style.top = `${u.valToPos(limit.value, limit.unit)}px`;
          node.dataset.value = limit.value;
          return [key, node];
        }));
      },
    },
  };
}

// A value axis's steps between ticks: 1, 2 and 5 times the powers of ten that its figures'
// decimals can write.
const steps = (digits) => Array.from({ length: 16 }, (_, power) => [1, 2, 5].map((m) => m * 10 ** (power - digits))).flat();

// uPlot options for series described as { label, unit, digits (its figures' decimals), colour,
// band ("min"/"max": the edge of a band, not in the readout nor legend), spread (a band's middle) }.
export function plotOptions({ specs, width, height, pinned = () => null, limits = () => [], onTimes = () => {} }) {
  const units = [...new Set(specs.map((spec) => spec.unit))];
  const style = getComputedStyle(document.body); // follows the light or dark scheme
  const lines = { stroke: style.getPropertyValue("--line"), width: 1 };
  const axis = { stroke: style.color, grid: lines, ticks: lines };
  const times = { ...axis, space: TIME_SPACE, values: (u, splits, _, __, step) => splits.map((t) => tick(t, step)) };
  const axes = [times, ...units.slice(0, 2).map((scale, i) => {
    const digits = Math.max(...specs.filter((spec) => spec.unit === scale).map((spec) => spec.digits));
    return { ...axis, scale, side: i ? 1 : 3, label: scale, size: 50, incrs: steps(digits),
      values: (u, splits) => splits.map((value) => number(value, digits, digits)) };
  })];
  const scales = { x: { time: true, range: timeRange(pinned) } };
  for (const unit of units) scales[unit] = { range: valueRange(unit, limits) };
  const series = specs.map((spec) => ({
    label: spec.label, band: spec.band, scale: spec.unit, spanGaps: false, stroke: spec.colour + (spec.band ? "55" : ""),
    width: spec.band ? 1 : 1.5, points: { size: 5 },
  }));
  const bands = specs.flatMap((spec, i) => (spec.band === "max" ? [{ series: [i + 1, i - 1], fill: `${spec.colour}22` }] : []));
  return {
    width, height, axes, scales, bands, legend: { live: false },
    series: [{}, ...series], plugins: [readout(specs), thresholdLines(limits)],
    hooks: { setScale: [(u, key) => key === "x" && onTimes(u.scales.x)] },
  };
}

// A chart made, or given new data when it still fits its series; a chart whose series
// changed (a metric appeared, the unit or range kind changed) is made anew.
export function plot(old, shape, options, values, box) {
  if (old && old.shape === shape) {
    old.setData(values);
    return old;
  }
  old?.destroy();
  const chart = new uPlot(options(), values, box);
  chart.shape = shape;
  chart.root.querySelectorAll(".u-legend .u-series").forEach((row, i) => {
    if (chart.series[i + 1].band) row.style.display = "none"; // the band says it
  });
  return chart;
}
