// Charts opened large, in a dialog over the page (Esc or Close closes it), both kept live:
// a card's chart at the dialog's full width, and a comparison of one metric of every device
// that has it, one series per device in the page's order, over the page's range (while live,
// the same last minutes as every card), with each device's thresholds (a hidden device only
// while "show hidden" is ticked).
// Both are titled with the devices' names and follow the window's size.
import { decimals, metricsOf, unitOf } from "./format.js";
import { axisOf, chartedNames, draw, limitsOf, seriesOf } from "./chart.js";
import { isShown, nameOf } from "./labels.js";
import { COLOURS, plot, plotOptions, withGaps } from "./plot.js";
import { pinned } from "./range.js";

const tallest = () => Math.max(240, Math.round(window.innerHeight * 0.6));
let dialog = null;
let compared = null; // while comparing: { devices, metric, chart, box }
let enlarged = null; // the device whose chart is open large

// The one dialog, emptied and titled; closing it ends what it showed.
function open(title, onClose) {
  if (!dialog) {
    dialog = Object.assign(document.createElement("dialog"), { className: "large" });
    const heading = document.createElement("header");
    heading.append(document.createElement("h2"), Object.assign(document.createElement("button"), {
      type: "button", className: "close", textContent: "Close",
    }));
    dialog.append(heading, Object.assign(document.createElement("div"), { className: "body" }));
    heading.querySelector(".close").addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      dialog.onClosed?.();
      dialog.onClosed = null;
    });
    document.body.append(dialog);
  }
  dialog.onClosed?.();
  dialog.onClosed = onClose;
  dialog.querySelector("h2").textContent = title;
  dialog.setAttribute("aria-label", title);
  const body = dialog.querySelector(".body");
  body.replaceChildren();
  if (!dialog.open) dialog.showModal();
  return body;
}

const chartBox = (body) => body.appendChild(Object.assign(document.createElement("div"), { className: "chart" }));

// The card's "Open large" button.
export function wireLarge(device) {
  const button = Object.assign(document.createElement("button"), { type: "button", className: "enlarge", textContent: "Open large" });
  button.setAttribute("aria-label", `Open ${device.id}'s chart large`);
  device.node.querySelector(".actions").append(button);
  button.addEventListener("click", () => {
    const body = open(nameOf(device.id), () => {
      device.large?.chart?.destroy();
      device.large = null;
      enlarged = null;
    });
    enlarged = device;
    device.large = { chart: null, box: chartBox(body), height: tallest() };
    draw(device);
  });
}

export function redrawCompare() {
  if (!compared?.metric) return;
  const { metric, box } = compared;
  const having = [...compared.devices.values()]
    .filter((device) => isShown(device.id) && chartedNames(device).includes(metric))
    .sort((a, b) => (a.node.compareDocumentPosition(b.node) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1)); // as on the page
  const specs = having.map((device, i) => ({ label: nameOf(device.id), unit: unitOf(metric), axis: axisOf(metric),
    digits: decimals(metric), colour: COLOURS[i % COLOURS.length] }));
  const limits = () => having.flatMap((device) => limitsOf(device, [metric])
    .map((limit) => ({ ...limit, label: `${nameOf(device.id)} ${limit.label}` })));
  const tables = having.map((device) => {
    const { xs, column } = seriesOf(device, metric);
    return withGaps(xs, [column]);
  });
  const values = tables.length ? uPlot.join(tables) : [[]];
  const showTimes = ({ min, max }) => Object.assign(box.dataset, { from: min, to: max }); // the x axis, for tests
  const options = () => plotOptions({ specs, width: box.clientWidth, height: tallest(),
    pinned: () => pinned(having[0]?.period), limits, onTimes: showTimes });
  const shape = [metric, ...specs.map((spec) => spec.label), specs[0]?.unit, specs[0]?.digits].join();
  compared.chart = plot(compared.chart, shape, options, values, box);
  box.dataset.series = specs.length;
}

// The header's Compare button: a dialog with a metric to choose (the first in the cards'
// order to begin with) and every device's series of it.
export function wireCompare(devices) {
  document.getElementById("compare").addEventListener("click", () => {
    const body = open("Compare devices", () => {
      compared?.chart?.destroy();
      compared = null;
    });
    const shownDevices = [...devices.values()].filter((device) => isShown(device.id));
    const names = metricsOf(Object.fromEntries(shownDevices.flatMap(chartedNames).map((name) => [name, true])));
    const select = document.createElement("select");
    select.append(...names.map((name) => new Option(name, name)));
    const label = Object.assign(document.createElement("label"), { textContent: "Metric " });
    label.append(select);
    body.append(label);
    compared = { devices, metric: select.value, chart: null, box: chartBox(body) };
    select.addEventListener("change", () => {
      compared.metric = select.value;
      redrawCompare();
    });
    redrawCompare();
  });
}

// The dialog's chart follows the window's size.
const fit = (chart, box) => chart?.setSize({ width: box.clientWidth, height: tallest() });
window.addEventListener("resize", () => {
  if (enlarged) {
    enlarged.large.height = tallest();
    fit(enlarged.large.chart, enlarged.large.box);
  }
  if (compared) fit(compared.chart, compared.box);
});
