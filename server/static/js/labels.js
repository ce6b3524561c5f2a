// What viewers make of a device (devices.py): a friendly name on its card (the id then in
// small print, as on a hidden card: "kitchen · hidden"; both in the title), a group (a room, say) that cards are sorted under,
// a heading per group in name order and the ungrouped last (no headings while no shown
// card has a group), and hidden: a hidden card is out of sight unless "show hidden (N)"
// is on. Set from the card's "Edit device" form; other pages and the CLI are followed by
// their `device` events, which label() applies like /api/devices' answer.
const known = new Map(); // device id -> { node, name, group, hidden }
const main = () => document.getElementById("devices");
const toggle = () => document.getElementById("show-hidden");
const groupList = Object.assign(document.createElement("datalist"), { id: "device-groups" });
document.body.append(groupList);

export const nameOf = (id) => known.get(id)?.name || id;

// Whether the device is in sight: not hidden, or "show hidden" is ticked. What else shows
// devices (the alert list, Compare) follows each change through followShown().
export const isShown = (id) => !known.get(id)?.hidden || toggle().querySelector("input").checked;
const followers = [];
export const followShown = (follow) => followers.push(follow);

// Whether card a comes before card b: by the name shown, then by id.
const before = (a, b) => nameOf(a).localeCompare(nameOf(b)) < 0 || (nameOf(a) === nameOf(b) && a < b);

// The group's part of the page, made where it sorts; "" is the ungrouped, always last.
function section(group) {
  const sections = [...main().querySelectorAll(":scope > .group")];
  const found = sections.find((node) => node.dataset.group === group);
  if (found) return found;
  const made = Object.assign(document.createElement("section"), { className: "group" });
  made.dataset.group = group;
  made.append(Object.assign(document.createElement("h2"), { className: "group-name", textContent: group || "Ungrouped" }));
  const later = group && sections.find((node) => !node.dataset.group || node.dataset.group.localeCompare(group) > 0);
  main().insertBefore(made, later || null);
  return made;
}

// The card under its group's heading, in order; moved only when its place changes, and
// what had the focus in it keeps it.
function show(id) {
  const { node, name, group, hidden } = known.get(id);
  Object.assign(node.querySelector(".name"), { textContent: name || id, title: name ? `${name} (${id})` : id });
  const small = node.querySelector(".id");
  small.textContent = [(name || hidden) && id, hidden && "hidden"].filter(Boolean).join(" · ");
  small.title = small.textContent;
  node.querySelector(".labels .hide").textContent = hidden ? "Show" : "Hide";
  node.classList.toggle("hidden-device", hidden);
  const home = section(group);
  const later = [...home.querySelectorAll(":scope > .card")]
    .find((other) => other !== node && before(id, other.dataset.device)) || null;
  if (node.parentNode !== home || node.nextElementSibling !== later) {
    const focused = node.contains(document.activeElement) ? document.activeElement : null;
    home.insertBefore(node, later);
    focused?.focus();
  }
  arrange();
}

// Hidden cards out of sight unless asked for, and a group with none shown; a heading only
// when some shown card has a group; empty groups gone.
function arrange() {
  const showing = toggle().querySelector("input");
  const hiddenCount = [...known.values()].filter((entry) => entry.hidden).length;
  if (!hiddenCount) showing.checked = false;
  for (const { node, hidden } of known.values()) node.hidden = hidden && !showing.checked;
  const sections = [...main().querySelectorAll(":scope > .group")];
  const shownIn = (node) => node.querySelectorAll(":scope > .card:not([hidden])").length;
  const headed = sections.some((node) => node.dataset.group && shownIn(node));
  for (const node of sections) {
    if (!node.querySelector(":scope > .card")) {
      node.remove();
      continue;
    }
    node.hidden = !shownIn(node);
    node.querySelector(".group-name").hidden = !headed || node.hidden;
    node.style.setProperty("--cards", shownIn(node)); // how wide the group is laid out (dashboard.css)
  }
  toggle().hidden = !hiddenCount;
  toggle().querySelector(".count").textContent = hiddenCount;
  followers.forEach((follow) => follow());
}

toggle().querySelector("input").addEventListener("change", arrange);

// A new card: its labels are none until /api/devices or an event gives them.
export function place(id, node, forget) {
  known.set(id, { node, name: "", group: "", hidden: false });
  wireForm(id, known.get(id), forget);
  show(id);
}

// A device's labels, as /api/devices and `device` events give them.
export function label({ device, name = "", group = "", hidden = false }) {
  const entry = known.get(device);
  if (!entry || (entry.name === name && entry.group === group && entry.hidden === hidden)) return;
  Object.assign(entry, { name, group, hidden });
  show(device);
}

// A deleted device's card goes.
export function remove(id) {
  known.get(id)?.node.remove();
  known.delete(id);
  arrange();
}

function wireForm(id, entry, forget) {
  const details = entry.node.querySelector(".labels");
  const form = details.querySelector("form");
  const field = (name) => form.elements.namedItem(name);
  const confirm = form.querySelector(".confirm");
  const say = (text) => { form.querySelector(".message").textContent = text; };
  const url = `/api/devices/${encodeURIComponent(id)}`;

  async function patch(changes) {
    const answer = await fetch(url, {
      method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify(changes),
    }).catch(() => null);
    if (!answer?.ok) {
      say(answer ? (await answer.json().catch(() => ({}))).error || `HTTP ${answer.status}` : "Could not reach the server.");
      return false;
    }
    label(await answer.json());
    return true;
  }

  // Filled as the summary is clicked (or Enter pressed on it), before the form opens: "toggle"
  // comes a task later, and on a busy phone would wipe what was typed meanwhile.
  details.querySelector("summary").addEventListener("click", () => {
    if (details.open) return;
    field("name").value = entry.name;
    field("name").placeholder = id;
    field("group").value = entry.group;
    const groups = new Set([...known.values()].map((other) => other.group).filter(Boolean));
    groupList.replaceChildren(...[...groups].sort().map((group) => new Option(group)));
    confirm.hidden = true;
    say("");
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (await patch({ name: field("name").value, group: field("group").value })) say("Saved.");
  });
  form.querySelector(".hide").addEventListener("click", async () => {
    if (!(await patch({ hidden: !entry.hidden }))) return;
    say(entry.hidden ? "Hidden." : "Shown.");
    if (entry.node.hidden) toggle().querySelector("input").focus(); // the card left: on to the way back
  });
  form.querySelector(".delete").addEventListener("click", () => {
    confirm.hidden = false;
    confirm.querySelector(".cancel").focus();
  });
  const cancel = () => {
    confirm.hidden = true;
    form.querySelector(".delete").focus();
  };
  confirm.querySelector(".cancel").addEventListener("click", cancel);
  confirm.addEventListener("keydown", (event) => event.key === "Escape" && cancel());
  confirm.querySelector(".really").addEventListener("click", async () => {
    const revoke = field("revoke").checked ? "?revoke=1" : "";
    const answer = await fetch(url + revoke, { method: "DELETE" }).catch(() => null);
    if (answer?.ok || answer?.status === 404) forget(id);
    else say("Could not delete it.");
  });
}
