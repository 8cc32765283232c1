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

const STATUS_LABELS = {publish_failed: "publish failed"};

/** A status as a badge: `<span class="badge approved">approved</span>`. */
export function badge(status, extra = {}) {
  return el("span", {className: `badge ${status}`, dataset: {status}, ...extra}, STATUS_LABELS[status] || status);
}

/** Forget the problems shown in `container` (its [data-error-for] spans and aria-invalid fields). */
export function clearProblems(container) {
  for (const span of container.querySelectorAll("[data-error-for]")) span.textContent = "";
  for (const input of container.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

/** A refused request's problems beside the fields of `container` that name them ([data-error-for=field] spans,
    inputs named `field`); what names no shown field comes back as one sentence, for a message beside the action. */
export function showProblems(container, error, problemOf) {
  const detail = error.body && error.body.detail;
  if (error.status !== 422 || !Array.isArray(detail)) return error.message;
  const general = [];
  for (const item of detail) {
    const {field, msg} = problemOf(item);
    const span = field && container.querySelector(`[data-error-for="${CSS.escape(field)}"]`);
    if (span) {
      span.textContent = span.textContent ? `${span.textContent}; ${msg}` : msg;
      const input = container.querySelector(`[name="${CSS.escape(field)}"]`);
      if (input) input.setAttribute("aria-invalid", "true");
    } else general.push(field ? `${field}: ${msg}` : msg);
  }
  return general.length ? general.join("; ") : "Not saved: fix the fields marked in red.";
}
