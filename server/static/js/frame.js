// Work done in animation frames. Readings may arrive hundreds a second; each card's values
// and chart change at most once a frame, however many came in between: a job is keyed (by
// its card, say), and a job asked for twice before it runs runs once. A frame does about
// BUDGET ms of jobs, and leaves the rest, in turn, to the next, so none blocks the page; a
// job may also ask to run at most every so many ms (a chart redrawn a few times a second).
const BUDGET = 8; // ms
const due = new Map(); // key -> [job, every]
const ran = new Map(); // key -> when it last ran
let asked = false;
let timer = null; // while the next frame waits for a held-back job

function run() {
  asked = false;
  const start = performance.now();
  let wait = Infinity; // ms until the soonest job held back by its "every" may run
  for (const [key, [job, every]] of due) {
    const since = start - (ran.get(key) ?? -Infinity);
    if (since < every) {
      wait = Math.min(wait, every - since);
      continue;
    }
    due.delete(key);
    ran.set(key, start);
    try {
      job();
    } catch (error) {
      console.error("could not update the page", error);
    }
    if (performance.now() - start > BUDGET) {
      wait = 0;
      break;
    }
  }
  if (due.size) ask(wait);
}

// A frame now, or once the soonest held-back job may run: no empty frames in between.
function ask(wait = 0) {
  if (asked) return;
  asked = true;
  if (wait > 0) {
    timer = setTimeout(() => {
      timer = null;
      requestAnimationFrame(run);
    }, wait);
  } else {
    requestAnimationFrame(run);
  }
}

export function nextFrame(key, job, every = 0) {
  due.set(key, [job, every]);
  if (timer && performance.now() - (ran.get(key) ?? -Infinity) >= every) { // it need not wait
    clearTimeout(timer);
    timer = null;
    asked = false;
  }
  ask();
}
