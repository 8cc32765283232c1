/* The page's shared state and small DOM helpers. */

export const state = {siteId: null, sites: [], active: null, shown: null, timers: {}, blobUrls: [], busy: false,
  openRunId: null};

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "className") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fmtDate(value) {
  if (!value) return "–";
  const date = new Date(value);
  return isNaN(date) ? String(value) : date.toLocaleString(undefined, {dateStyle: "short", timeStyle: "medium"});
}

export const fmtNum = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString());

export function notify(message, kind = "info") {
  const box = $("notice");
  box.textContent = message;
  box.className = `notice ${kind}`;
  box.hidden = !message;
  clearTimeout(state.timers.notice);
  if (message && kind !== "error") state.timers.notice = setTimeout(() => { box.hidden = true; }, 8000);
}

export function showModal(id, show) { $(id).hidden = !show; }
