// Drag-to-zoom: dragging the mouse across a chart's plot (a card's, or one opened large or
// compared) asks for that stretch of time as the page's custom range, in a ZOOM event that
// range.js answers for every chart; the range picker, or the browser's Back, returns. uPlot
// draws the selection while the mouse drags. It follows the mouse only, so on a phone a
// finger scrolls the page over a chart as before, and nothing zooms.
export const ZOOM = "sensorcast-zoom";
const DRAG = { x: true, y: false, setScale: false, dist: 5 }; // a drag shorter than `dist` px is a click

// A uPlot plugin.
export const dragToZoom = {
  opts: (u, options) => ({ ...options, cursor: { ...options.cursor, drag: DRAG } }),
  hooks: {
    setSelect: (u) => {
      const { left, width } = u.select;
      u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
      const detail = { since: u.posToVal(left, "x"), until: u.posToVal(left + width, "x") };
      u.root.dispatchEvent(new CustomEvent(ZOOM, { bubbles: true, detail }));
    },
  },
};
