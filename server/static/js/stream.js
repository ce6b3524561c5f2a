// The live stream: /stream as an EventSource that resumes after the newest reading id seen,
// and the header's indicator of whether it is live. A refusal (503 or 429 while the server
// is full, 401 when the login ended) closes an EventSource for good: a new one opens after a
// growing, jittered delay, so a crowd does not return at once; or the viewer logs in again.
// A live stream that ends may be a login ended too (the browser would only learn it at its
// next try, seconds later): the server is asked at once, and a 401 goes to the login page.
// While the server's own live feed has paused (it lost its database for a moment, and keeps
// the stream open to fill the gap when it is back), a `status` event says so, and the
// indicator says "waiting for the server" rather than "live" over a silent stream.
// A stream a NAT or a phone's network dropped without a word stays open to the browser for
// good: a quiet stream gets a `heartbeat` event every `every` seconds (the first as it
// opens). Once one is OVERDUE seconds late, the indicator says no word comes (and no card is
// stale for that silence, which is the page's); one silent for SILENT_BEATS of them is
// closed and opened again, replaying what it missed.
import { newer } from "./format.js";

const RETRY_MS = 3000;
const SILENT_BEATS = 3;
const OVERDUE = 5; // seconds
let heartbeatSeconds = 15; // the server says, in each heartbeat
const indicator = () => document.getElementById("connection");
let lastEventId = "";
let retryDelay = RETRY_MS;
let heardAt = Date.now(); // when the server last said anything
export const lastHeard = () => heardAt / 1000; // seconds: a device's silence counts only up to then

const SHOWN = {
  live: "live", silent: "no word from the server…", paused: "waiting for the server…", reconnecting: "reconnecting…",
};
const showing = (state) => indicator().classList.contains(state);
export const isLive = () => showing("live");
export const isDown = () => !isLive() && !showing("connecting"); // out of touch, not while first connecting

// Replay from this position on, unless a newer one was seen. On a Redis Cluster a position
// has a part per shard (`1764000000000-0_1764000000012-3`): each part is the newer of the two.
export function resumeAfter(id) {
  if (!id) return;
  const mine = lastEventId.split("_");
  const theirs = id.split("_");
  lastEventId = mine.length !== theirs.length ? id
    : theirs.map((part, shard) => (newer(part, mine[shard]) ? part : mine[shard])).join("_");
}

export function toLogin() {
  window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname + window.location.search)}`);
}

function show(state) {
  Object.assign(indicator(), { textContent: SHOWN[state], className: `connection ${state}` });
}

// Opens the stream: onOpen() each time it opens; handlers by event name get each event's
// data parsed (a reading with its id).
export function connect(onOpen, handlers) {
  const retryLater = () => {
    setTimeout(() => connect(onOpen, handlers), retryDelay * (0.5 + Math.random()));
    retryDelay = Math.min(retryDelay * 2, 60000);
  };
  const query = lastEventId ? `?lastEventID=${encodeURIComponent(lastEventId)}` : "";
  const source = new EventSource(`/stream${query}`);
  let heard = Date.now();
  const listen = (name, handle) => source.addEventListener(name, (event) => {
    heard = heardAt = Date.now();
    if (showing("silent")) show("live");
    handle(event);
  });
  const watchdog = setInterval(() => { // open, or opening on a connection that may be as dead
    const closed = source.readyState === EventSource.CLOSED; // then retried later, or the login page is next
    const quiet = (Date.now() - heard) / 1000;
    if (showing("live") && quiet > heartbeatSeconds + OVERDUE) show("silent");
    if (!closed && quiet < SILENT_BEATS * heartbeatSeconds) return;
    clearInterval(watchdog);
    if (closed) return;
    source.close();
    show("reconnecting");
    connect(onOpen, handlers);
  }, 1000);
  source.onopen = () => {
    heard = heardAt = Date.now();
    retryDelay = RETRY_MS;
    show("live");
    onOpen();
  };
  source.onerror = () => {
    const ended = showing("live") || showing("paused");
    const closed = source.readyState === EventSource.CLOSED;
    show("reconnecting");
    if (!ended && !closed) return; // the browser tries again, as it did since the stream ended
    const otherwise = () => closed && retryLater();
    fetch("/api/devices", { method: "HEAD" }).then((answer) => {
      if (answer.status !== 401) return otherwise();
      source.close();
      toLogin();
    }, otherwise);
  };
  listen("heartbeat", (event) => { heartbeatSeconds = JSON.parse(event.data).every; });
  listen("status", (event) => show(JSON.parse(event.data).live ? "live" : "paused"));
  listen("reading", (event) => {
    lastEventId = event.lastEventId || lastEventId;
    handlers.reading({ id: event.lastEventId, ...JSON.parse(event.data) }); // on a cluster, the data has its own id
  });
  for (const [name, handle] of Object.entries(handlers)) {
    if (name !== "reading") listen(name, (event) => handle(JSON.parse(event.data)));
  }
}
