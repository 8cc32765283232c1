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

/** The chosen site's IANA timezone (every time on the page is shown in it), UTC before a site is chosen. */
export function siteZone() {
  const site = (state.sites || []).find((s) => s.id === state.siteId);
  return (site && site.timezone) || "UTC";
}

const formatters = new Map();
function formatter(zone) {
  if (!formatters.has(zone)) {
    let f;
    try {
      f = new Intl.DateTimeFormat("en-US", {timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", weekday: "short", timeZoneName: "short"});
    } catch (_) {  // an unknown zone (mid-edit in the form): UTC, labelled as such
      f = formatter("UTC");
    }
    formatters.set(zone, f);
  }
  return formatters.get(zone);
}

/** A moment's parts in `zone`: {year, month, day, hour, minute, second, weekday, zone (its short label)}. */
export function timeParts(value, zone = siteZone()) {
  const date = value instanceof Date ? value : new Date(value);
  if (isNaN(date)) return null;
  const parts = {};
  for (const {type, value: v} of formatter(zone).formatToParts(date)) parts[type] = v;
  return {year: parts.year, month: parts.month, day: parts.day, hour: parts.hour === "24" ? "00" : parts.hour,
    minute: parts.minute, second: parts.second, weekday: parts.weekday, zone: parts.timeZoneName};
}

/** One format everywhere: "2025-03-14 09:30:05 EDT", 24-hour, in the site's timezone with its label.
    `seconds: false` drops the seconds, `weekday: true` starts with "Fri". */
export function fmtDate(value, {zone = siteZone(), seconds = true, weekday = false, label = true} = {}) {
  if (!value) return "–";
  const p = timeParts(value, zone);
  if (!p) return String(value);
  const time = `${p.hour}:${p.minute}${seconds ? `:${p.second}` : ""}`;
  return `${weekday ? `${p.weekday} ` : ""}${p.year}-${p.month}-${p.day} ${time}${label ? ` ${p.zone}` : ""}`;
}

/** A duration in words: "42 s", "3 min 05 s", "1 h 02 min". */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return "–";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
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
