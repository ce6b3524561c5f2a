// What every chart on the page shares (a card's, its enlarged view, the compare view): a time
// axis and a value axis for each unit (or unknown metric) shown, in the page's locale, its
// figures as round as their step ("22", "24"; "21.5"), an x range pinned to the chosen range
// (a single point gets some room around it, in time and in value), breaks longer than a few
// intervals drawn as gaps, a value with none to join drawn as a dot, a readout of the time
// and each series' value under the cursor, threshold lines, and drag-to-zoom (zoom.js).
import { number, tick, when, withUnit } from "./format.js";
import { dragToZoom } from "./zoom.js";

// Twenty colours apart from one another, each mid-light: readable on a light card and a dark one.
export const COLOURS = ["#d1495b", "#00798c", "#edae49", "#30638e", "#8f2d56", "#5b8e7d", "#7cb342", "#9c27b0",
  "#f4511e", "#3f51b5", "#795548", "#827717", "#fb8c00", "#1e88e5", "#ba68c8", "#b71c1c", "#afb42b", "#90a4ae",
  "#2a9d3f", "#6a4c93"];
const LONE_POINT_ROOM = 300; // seconds either side of the only time there is
const FLAT_ROOM = 1; // either side of a value axis's only value (one reading, or all alike), in its unit
const GAP = 3; // a break longer than this many usual intervals is a gap
const NEAR_STEPS = 3; // the steps on each side of a step that say what interval is usual there
const TIME_SPACE = 90; // px from one time on the axis to the next, where the chart is wide enough
const LEAST_TIMES = 4; // labels on a time axis, however narrow, while they fit side by side (with three, a phone's
// 1 h went up to 20 minutes by "now" without one)
const LABEL_GAP = 6; // px between two labels on the time axis, at least
const WIDTH_SAMPLES = [0, 0.2, 0.4, 0.6, 0.8, 1]; // where across a time axis its labels are measured
const READOUT_REACH = 2; // usual steps between a series' points: farther from the pointer, no value is read out
const AXIS_FONT = "12px system-ui, sans-serif";
// Seconds from one time on the axis to the next: steps close together, so that one of them
// gives a narrow chart its LEAST_TIMES labels (none of 3 or 4 minutes: a card's Live reads
// every 5).
const TIME_STEPS = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 360, 600, 720, 900, 1200, 1800, 3600, 7200,
  10800, 14400, 21600, 28800, 43200, 86400, 172800, 259200, 604800, 1209600, 2592000];
const UNIT_SPACE = 16; // px for a value axis's unit, written up its side
const TICK_SPACE = 12; // px for a value axis's ticks and the gap to its figures
const measure = document.createElement("canvas").getContext("2d");
measure.font = AXIS_FONT;

// Rows (xs and one column per series) with a null row wherever the time between two rows is
// more than GAP times the usual interval there (the median of the steps around it: a slow
// stretch before a burst, or a history spread out before the dense newest readings, keeps
// its own): uPlot breaks its line at a null (spanGaps false) and spans an undefined (a
// metric that one reading did not carry).
export function withGaps(xs, columns) {
  const steps = xs.slice(1).map((x, i) => x - xs[i]);
  if (steps.length < 2) return [xs, ...columns];
  const usualAt = (i) => {
    const near = steps.slice(Math.max(0, i - NEAR_STEPS), i + NEAR_STEPS + 1).filter((step) => step > 0);
    return near.sort((a, b) => a - b)[Math.floor(near.length / 2)];
  };
  const rows = [[], ...columns.map(() => [])];
  xs.forEach((x, i) => {
    const usual = i && usualAt(i - 1);
    if (usual && x - xs[i - 1] > GAP * usual) {
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

// The uPlot scale of a value axis ("x" is the time's, and a metric may be named so).
const scaleOf = (axis) => `${axis} axis`;

// A value axis holds its data and the threshold lines on it, with some room around them
// (uPlot would run an axis with a single value from 0 to twice that value); while every
// series on it is switched off in the legend, it has no range, and uPlot hides it.
function valueRange(axis, limits) {
  return (u, min, max) => {
    if (!u.series.some((series) => series.scale === scaleOf(axis) && series.show)) return [null, null];
    const values = limits().filter((limit) => limit.axis === axis).map((limit) => limit.value);
    if (min != null) values.push(min, max);
    if (!values.length) return [0, 1];
    const [lowest, highest] = [Math.min(...values), Math.max(...values)];
    const room = lowest === highest ? FLAT_ROOM : 0;
    return uPlot.rangeNum(lowest - room, highest + room, 0.1, true);
  };
}

// uPlot draws a series' points only where they are sparse; where it does not, the values with
// no line to either side (a null or nothing before and after) are drawn all the same, or a
// device with one reading would be in the legend but nowhere on the chart.
function lonePoints(u, index, show) {
  if (show) return null; // every point is drawn
  const values = u.data[index];
  const drawn = values.flatMap((value, i) => (value === undefined ? [] : [i])); // undefined is spanned
  const lone = drawn.filter((i, at) => values[i] !== null
    && (at === 0 || values[drawn[at - 1]] === null) && (at === drawn.length - 1 || values[drawn[at + 1]] === null));
  return lone.length ? lone : null;
}

// The time axis's spacing in px for a plot `width` px wide showing min to max: the first step
// whose labels fit side by side (the widest of those at a few times across: 11/1 is
// narrower than 10/28) and that is TIME_SPACE apart, or, before that, the last one that
// still gives LEAST_TIMES labels.
function timeSpace(u, axis, min, max, width) {
  const px = width / (max - min); // per second
  const widest = (step) => Math.max(...WIDTH_SAMPLES.map((at) => tick(min + at * (max - min), step))
    .map((label) => measure.measureText(label).width));
  const fits = (step) => step * px >= widest(step) + LABEL_GAP;
  const step = TIME_STEPS.find((each, i) => fits(each)
    && (each * px >= TIME_SPACE || (max - min) / (TIME_STEPS[i + 1] ?? Infinity) < LEAST_TIMES));
  return step ? step * px * 0.999 : TIME_SPACE; // a hair under, so uPlot picks that step
}

// A value axis as wide as its widest figure.
const valueAxisSize = (u, values) =>
  Math.ceil(Math.max(24, ...(values || []).map((text) => measure.measureText(text).width))) + TICK_SPACE;

const figure = (value, digits) => number(value, digits, digits);
const say = (value, { unit, digits }) => withUnit(figure(value, digits), unit);

// Each series' reach: READOUT_REACH times the usual step between its points (seconds), or
// everywhere for a series of one point.
function reaches(u) {
  return u.data.map((values) => {
    const xs = u.data[0].filter((_, i) => values[i] != null);
    const steps = xs.slice(1).map((x, i) => x - xs[i]).filter((step) => step > 0).sort((a, b) => a - b);
    return steps.length ? READOUT_REACH * steps[Math.floor(steps.length / 2)] : Infinity;
  });
}

// The index of the series' value nearest time t, looking out from index `from`; null for none.
function nearest(xs, values, from, t) {
  let [before, after] = [from, from];
  while (before >= 0 && values[before] == null) before -= 1;
  while (after < values.length && values[after] == null) after += 1;
  if (after >= values.length) return before < 0 ? null : before;
  return before >= 0 && t - xs[before] <= xs[after] - t ? before : after;
}

// A box by the cursor that reads out the time and each drawn series' value there, with the
// series' decimals (a band's middle line with the band's ends: "21.5 °C (20.0–23.0)"), in
// full (wrapped where the plot is narrow); inside the plot, clear of the value axes' figures
// either side. A series without a point within its reach of the pointer says nothing.
function readout(specs) {
  let box;
  let reach = [];
  let reachOf = null; // the data `reach` was measured on
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
        const xs = u.data[0];
        const rows = [];
        if (idx != null && xs[idx] != null) {
          if (reachOf !== u.data) [reach, reachOf] = [reaches(u), u.data];
          const t = u.posToVal(left, "x");
          specs.forEach((spec, i) => {
            const at = nearest(xs, u.data[i + 1], idx, t);
            if (spec.band || !u.series[i + 1].show || at === null || Math.abs(xs[at] - t) > reach[i + 1]) return;
            const [low, value, high] = [u.data[i][at], u.data[i + 1][at], u.data[i + 2]?.[at]];
            let text = say(value, spec);
            const [from, to] = [low, high].map((end) => end != null && figure(end, spec.digits));
            if (spec.spread && from && to && from !== to) text += ` (${from}–${to})`; // none for a bucket of one value
            rows.push(line(spec.label, text, spec.colour));
          });
        }
        box.hidden = !rows.length;
        if (box.hidden) return;
        box.replaceChildren(Object.assign(document.createElement("time"), { textContent: when(xs[idx]) }), ...rows);
        const room = u.over.clientWidth;
        box.style.maxWidth = `${room}px`;
        box.style.left = "0px"; // its own width, before it is placed
        const after = left + 12; // right of the cursor, or left of it where that does not fit
        const fits = after + box.offsetWidth <= room;
        box.style.left = `${Math.max(0, Math.min(fits ? after : left - 12 - box.offsetWidth, room - box.offsetWidth))}px`;
      },
    },
  };
}

// A dashed line across the plot at each limit, labelled ("high 25 °C") on a background at
// its right end, under the line or over it, else at its left end, else stacked further
// from it, where that would cover another label; or not at all where no place near it
// is free (several devices' "low 30 °C" in one place, say).
function thresholdLines(limits) {
  let drawn = new Map();
  return {
    hooks: {
      draw: (u) => {
        const now = new Map(limits().map((limit) => [`${limit.axis} ${limit.label}`, limit]));
        for (const [key, node] of drawn) if (!now.has(key)) node.remove();
        drawn = new Map([...now].map(([key, limit]) => {
          let node = drawn.get(key);
          if (!node) {
            node = u.over.appendChild(Object.assign(document.createElement("div"), { className: "threshold" }));
            node.append(Object.assign(document.createElement("span"), { textContent: limit.label }));
          }
          node.hidden = u.scales[scaleOf(limit.axis)].min == null; // its metric switched off in the legend
          node.style.top = `${u.valToPos(limit.value, scaleOf(limit.axis))}px`;
          node.dataset.value = limit.value;
          return [key, node];
        }));
        placeLabels([...drawn.values()].filter((node) => !node.hidden), u.over.clientHeight);
      },
    },
  };
}

// Each line's label under it, else over it, at the right end, else at the left, else one,
// two or three labels' height further away: never on another line's label; hidden where
// no place is free.
function placeLabels(lines, height) {
  const taken = []; // [top, bottom, left, right] of each label placed, px
  const at = (line) => parseFloat(line.style.top);
  for (const line of lines.sort((a, b) => at(a) - at(b))) {
    const label = line.firstChild;
    const [size, width, across] = [label.offsetHeight, label.offsetWidth, line.clientWidth];
    const places = [0, 1, 2, 3].flatMap((away) => ["right", "left"].flatMap((side) => [
      at(line) + 1 + away * (size + 1), at(line) - (away + 1) * (size + 1)].map((y) => ({
      side, y, x: side === "right" ? across - width - 2 : 2 }))));
    const free = places.find(({ x, y }) => y >= 0 && y + size <= height
      && !taken.some(([above, below, from, to]) => y < below && y + size > above && x < to && x + width > from));
    label.style.visibility = free ? "" : "hidden";
    if (!free) continue;
    Object.assign(label.style, { top: `${free.y - at(line)}px`, left: free.side === "left" ? "2px" : "",
      right: free.side === "left" ? "auto" : "" });
    taken.push([free.y, free.y + size, free.x, free.x + width]);
  }
}

// A band's middle line switched on or off in the legend takes its band's edges with it.
const bandsFollow = (specs) => (u, index) => {
  if (!specs[index - 1]?.spread) return;
  const { show } = u.series[index];
  for (const edge of [index - 1, index + 1]) if (u.series[edge].show !== show) u.setSeries(edge, { show });
};

// Whoever made the chart is told of a series switched on or off in the legend (a band's
// edges follow their middle, and say nothing).
const tellShown = (specs, onShow) => (u, index) => {
  const spec = specs[index - 1];
  if (spec && !spec.band) onShow(spec, u.series[index].show);
};

// A value axis's steps between ticks: 1, 2 and 5 times the powers of ten that its series'
// decimals can write. Its figures have the decimals of its step (0.5: one; 2: none).
// A value axis's steps: from its figures' last decimal up to 5e100 (a metric may be up to 1e100).
const steps = (digits) => Array.from({ length: digits + 101 }, (_, power) => [1, 2, 5].map((m) => m * 10 ** (power - digits)))
  .flat();
const stepDecimals = (step) => Math.max(0, -Math.floor(Math.log10(step) + 1e-9));

// uPlot options for series described as { label, unit, axis (its unit, or an unknown metric's
// name: series with the same axis share it, and it is named so), digits (its figures' decimals),
// colour, show (false: off until switched on in the legend), band ("min"/"max": the edge of a
// band, not in the readout nor legend), spread (a band's middle) }. Each axis is drawn while a
// series on it is shown, the first on the left, the next on the right, and so on; a chart with
// nothing to draw has them with no figures. onShow(spec, shown) follows the legend's switches.
export function plotOptions({ specs, width, height, pinned = () => null, limits = () => [], onTimes = () => {},
  onShow = () => {} }) {
  const names = [...new Set(specs.map((spec) => spec.axis))];
  const style = getComputedStyle(document.body); // follows the light or dark scheme
  const lines = { stroke: style.getPropertyValue("--line"), width: 1 };
  const axis = { stroke: style.color, grid: lines, ticks: lines, font: AXIS_FONT };
  const times = { ...axis, space: timeSpace, incrs: TIME_STEPS,
    values: (u, splits, _, __, step) => splits.map((t) => tick(t, step)) };
  const axes = [times, ...names.map((name, i) => {
    const digits = Math.max(...specs.filter((spec) => spec.axis === name).map((spec) => spec.digits));
    const figures = (u, splits, _, __, step) => splits
      .map((value) => (u.data[0].length ? number(value, stepDecimals(step), stepDecimals(step)) : ""));
    return { ...axis, scale: scaleOf(name), side: i % 2 ? 1 : 3, label: name, labelSize: UNIT_SPACE, labelGap: 0,
      grid: i ? { show: false } : lines, // one set of grid lines: the first axis's
      size: valueAxisSize, ticks: { ...lines, size: 4 }, incrs: steps(digits), values: figures };
  })];
  const scales = { x: { time: true, range: timeRange(pinned) } };
  for (const name of names) scales[scaleOf(name)] = { range: valueRange(name, limits) };
  const series = specs.map((spec) => {
    const colour = spec.colour + (spec.band ? "55" : "");
    return { label: spec.label, band: spec.band, scale: scaleOf(spec.axis), show: spec.show ?? true, spanGaps: false,
      stroke: colour, width: spec.band ? 1 : 1.5, points: { size: 6, fill: colour, filter: lonePoints } };
  });
  const bands = specs.flatMap((spec, i) => (spec.band === "max" ? [{ series: [i + 1, i - 1], fill: `${spec.colour}22` }] : []));
  return {
    width, height, axes, scales, bands, legend: { live: false },
    series: [{}, ...series], plugins: [readout(specs), thresholdLines(limits), dragToZoom],
    hooks: { setScale: [(u, key) => key === "x" && onTimes(u.scales.x)],
      setSeries: [bandsFollow(specs), tellShown(specs, onShow)] },
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
