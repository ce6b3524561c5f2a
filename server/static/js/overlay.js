// Charts opened large, in a dialog over the page (Esc or Close closes it), both kept live:
// a card's chart at the dialog's full width, and a comparison of one metric of every device
// that has it, one series per device.
import { unitOf } from "./format.js";
import { chartedNames, draw, seriesOf } from "./chart.js";
import { COLOURS, plot, plotOptions, withGaps } from "./plot.js";
import { pinned } from "./range.js";

const tallest = () => Math.max(240, Math.round(window.innerHeight * 0.6));
let dialog = null;
let compared = null; // while comparing: { devices, metric, chart, box }

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
    const body = open(device.id, () => {
      device.large?.chart?.destroy();
      device.large = null;
    });
    device.large = { chart: null, box: chartBox(body), height: tallest() };
    draw(device);
  });
}

export function redrawCompare() {
  if (!compared?.metric) return;
  const { metric, box } = compared;
  const having = [...compared.devices.values()].filter((device) => chartedNames(device).includes(metric));
  const specs = having.map((device, i) => ({ label: device.id, unit: unitOf(metric), colour: COLOURS[i % COLOURS.length] }));
  const tables = having.map((device) => {
    const { xs, column } = seriesOf(device, metric);
    return withGaps(xs, [column]);
  });
  const values = tables.length ? uPlot.join(tables) : [[]];
  const options = () => plotOptions({ specs, width: box.clientWidth, height: tallest(), pinned: () => pinned(having[0]?.period) });
  compared.chart = plot(compared.chart, [metric, ...specs.map((spec) => spec.label), specs[0]?.unit].join(), options, values, box);
  box.dataset.series = specs.length;
}

// The header's Compare button: a dialog with a metric to choose and every device's series of it.
export function wireCompare(devices) {
  document.getElementById("compare").addEventListener("click", () => {
    const body = open("Compare devices", () => {
      compared?.chart?.destroy();
      compared = null;
    });
    const names = [...new Set([...devices.values()].flatMap(chartedNames))].sort();
    const select = document.createElement("select");
    select.append(new Option("Choose a metric", ""), ...names.map((name) => new Option(name, name)));
    const label = Object.assign(document.createElement("label"), { textContent: "Metric " });
    label.append(select);
    body.append(label);
    compared = { devices, metric: "", chart: null, box: chartBox(body) };
    select.addEventListener("change", () => {
      compared.metric = select.value;
      redrawCompare();
    });
    if (names.length === 1) {
      select.value = names[0];
      select.dispatchEvent(new Event("change"));
    }
  });
}
