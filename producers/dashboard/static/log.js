/* A run's log lines: parsed from the API's "[YYYY-MM-DD HH:MM:SS] LEVEL message" (UTC), put in time order, shown
   in the site's timezone with their level's colour, filtered by level, and saved as a file. */

import {el, fmtDate} from "./ui.js";

const LINE = /^\[(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)\] (\w+) ([\s\S]*)$/;
const BATCH = /^Stage (\d+) progress: batch (\d+)\/(\d+)\b/;
const PROGRESS_EVERY_MS = 30_000;  // the summary keeps a stage's progress line every 10 % or 30 s

/** The API's lines as {at (ms), level, message, stage, batch: [done, total] | null}, oldest first (the API lists
    them by insertion; batches that commit in parallel insert out of time order). */
export function parseLog(lines) {
  const parsed = lines.map((text, index) => {
    const match = LINE.exec(text);
    if (!match) return {at: null, level: "INFO", message: text, stage: null, batch: null, index};
    const [, day, time, level, message] = match;
    const batch = BATCH.exec(message);
    const stage = /^Stage (\d+) /.exec(message);
    return {at: Date.parse(`${day}T${time}Z`), level: level.toUpperCase(), message, index,
      stage: stage ? Number(stage[1]) : null, batch: batch ? [Number(batch[2]), Number(batch[3])] : null};
  });
  let last = -Infinity;  // a line without a time stays after the one before it
  for (const line of parsed) { if (line.at === null) line.sortAt = last; else last = line.sortAt = line.at; }
  return parsed.sort((a, b) => (a.sortAt - b.sortAt) || (a.index - b.index));
}

/** The lines a level choice shows: "summary" (per-batch lines only every ~10 % or 30 s of a stage),
    "all", or "problems" (warnings and errors). */
export function filterLog(lines, level) {
  if (level === "all") return lines;
  if (level === "problems") return lines.filter((l) => l.level === "WARNING" || l.level === "ERROR");
  const kept = new Map();  // stage -> {tenth, at} of the last progress line kept
  return lines.filter((line) => {
    if (!line.batch || line.level !== "INFO") return true;
    const [done, total] = line.batch;
    const tenth = Math.floor((10 * done) / Math.max(total, 1));
    const before = kept.get(line.stage);
    if (done === total || !before || tenth > before.tenth || line.at - before.at >= PROGRESS_EVERY_MS) {
      kept.set(line.stage, {tenth, at: line.at});
      return true;
    }
    return false;
  });
}

const LEVEL_CLASS = {WARNING: "warning", ERROR: "error", CRITICAL: "error", DEBUG: "debug"};

/** The lines as elements in `container` (level-coloured, times in the site's timezone); keeps the view at the
    bottom when it was there. */
export function renderLog(container, lines, {empty = "(no log lines yet)", hidden = 0} = {}) {
  const atBottom = container.scrollTop + container.clientHeight >= container.scrollHeight - 8;
  const rows = lines.map((line) => el("div", {className: `log-line ${LEVEL_CLASS[line.level] || "info"}`,
    dataset: {level: line.level}},
  el("time", {className: "log-time", datetime: line.at === null ? null : new Date(line.at).toISOString()},
    line.at === null ? "" : fmtDate(line.at)), " ",
  el("span", {className: "log-level"}, line.level), " ",
  el("span", {className: "log-message"}, line.message)));
  if (!rows.length) rows.push(el("div", {className: "log-empty"}, empty));
  if (hidden) rows.push(el("div", {className: "log-hidden"}, `${hidden} per-batch line(s) hidden: choose “all detail” to see them.`));
  container.replaceChildren(...rows);
  if (atBottom) container.scrollTop = container.scrollHeight;
}

/** The lines as a text file, in the site's timezone. */
export function logText(lines) {
  return lines.map((l) => `${l.at === null ? "" : `[${fmtDate(l.at)}] `}${l.level} ${l.message}`).join("\n") + "\n";
}

/** Save `text` as a file named `name` (a Blob, no server round trip). */
export function saveText(text, name) {
  const url = URL.createObjectURL(new Blob([text], {type: "text/plain;charset=utf-8"}));
  const link = el("a", {href: url, download: name, hidden: true});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
