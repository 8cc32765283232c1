/* Run history: the filtered table, and one run's per-stage detail (with each stage's duration) and log in a modal. */

import {api} from "./api.js";
import {allStages, stageName} from "./catalogue.js";
import {filterLog, logText, parseLog, renderLog, saveText} from "./log.js";
import {$, el, fmtDate, fmtDuration, fmtNum, notify, showModal, state} from "./ui.js";

export const ICONS = {pending: "⏳", active: "🔄", paused: "⏸️", completed: "✅", failed: "❌"};

/** The table's filters as the API's parameters; null when none is set (the poll's own history answer serves). */
export function historyFilters() {
  const filters = {status: $("filter-status").value, trigger: $("filter-trigger").value,
    date_from: $("filter-from").value, date_to: $("filter-to").value};
  return Object.values(filters).some(Boolean) ? filters : null;
}

export function renderHistory(runs) {
  const rows = runs.map((run) => el("tr", {className: "clickable", dataset: {runId: run.run_id, status: run.status},
    onclick: () => openRun(run.run_id), tabindex: "0", onkeydown: (e) => { if (e.key === "Enter") openRun(run.run_id); }},
  el("td", {}, el("code", {}, run.run_id)),
  el("td", {}, el("span", {className: `badge ${run.status}`}, run.status)),
  el("td", {}, run.trigger),
  el("td", {className: "when"}, fmtDate(run.started_at)),
  el("td", {className: "when"}, fmtDate(run.completed_at)),
  el("td", {className: "num credits-used"}, fmtNum(run.total_credits_used)),
  el("td", {className: "num stage-of", title: stageName(run.current_stage)}, `${run.current_stage}/${allStages().length}`)));
  $("history-body").replaceChildren(...rows);
  $("history-empty").hidden = rows.length > 0;
}

/** The table, with its filters; `runs` (the unfiltered newest runs the poll just read) saves a request. */
export async function loadHistory(runs = null) {
  if (state.siteId === null) return;
  const siteId = state.siteId;
  const filters = historyFilters();
  if (runs && !filters) { renderHistory(runs); return; }
  try {
    const {data} = await api("/history/", {params: {site_id: siteId, ...(filters || {})}});
    if (siteId === state.siteId) renderHistory(data.runs);
  } catch (error) {
    if (error.status !== 401) notify(`Could not load the history: ${error.message}`, "error");
  }
}

// ---------- one run in the modal ----------
let runLog = [];  // the open run's parsed lines

/** When each stage started and ended, from each stage's own log (its first and last lines): [start, end] ms. */
async function stageTimes(run) {
  const stages = run.stages.filter((s) => s.status !== "pending");
  const answers = await Promise.all(stages.map((s) => api("/logs/", {params: {run_id: run.run_id, stage: s.stage,
    lines: 50}}).then(({data}) => parseLog(data.lines)).catch(() => [])));
  const times = {};
  let previousEnd = Date.parse(run.started_at);
  stages.forEach((s, i) => {
    const lines = answers[i];
    const started = lines.find((l) => /^Stage \d+ started/.test(l.message));
    const completed = [...lines].reverse().find((l) => /^Stage \d+ completed/.test(l.message));
    const start = started ? started.at : previousEnd;
    const end = completed ? completed.at : null;
    times[s.stage] = [start, end];
    if (end) previousEnd = end;
  });
  return times;
}

function stageDuration(run, s, times) {
  const [start, end] = times[s.stage] || [null, null];
  if (start === null || start === undefined) return "–";
  if (end) return fmtDuration(end - start);
  return s.status === "active" && run.status === "running" ? `${fmtDuration(Date.now() - start)} so far` : "–";
}

export async function openRun(runId) {
  state.openRunId = runId;
  $("run-title").textContent = `Run ${runId}`;
  $("run-stages").replaceChildren();
  $("run-log").replaceChildren(el("div", {className: "log-empty"}, "Loading…"));
  $("run-export-message").textContent = "";
  $("run-log-stage").value = "";
  showModal("run-modal", true);
  try {
    const {data: run} = await api(`/runs/${encodeURIComponent(runId)}`);
    const took = run.completed_at ? ` (${fmtDuration(Date.parse(run.completed_at) - Date.parse(run.started_at))})` : "";
    $("run-meta").replaceChildren(el("span", {className: `badge ${run.status}`}, run.status),
      ` ${run.trigger} · started ${fmtDate(run.started_at)} · completed ${fmtDate(run.completed_at)}${took} · `
      + `${fmtNum(run.total_credits_used)} credits used of ${fmtNum(run.estimated_credits)} estimated`,
      run.pause_reason && run.status === "paused" ? el("span", {className: "warn-text"}, ` · paused: ${run.pause_reason}`) : "",
      run.error_message ? el("span", {className: "error"}, ` · ${run.error_message}`) : "");
    const rows = (times) => run.stages.map((s) => {
      const shown = s.status === "active" && run.status === "paused" ? "paused" : s.status;
      return el("tr", {dataset: {stage: s.stage, status: shown}},
        el("td", {}, `${s.stage}. ${stageName(s.stage)}`),
        el("td", {}, `${ICONS[shown] || ""} ${shown}`),
        el("td", {className: "num"}, fmtNum(s.items_in)), el("td", {className: "num"}, fmtNum(s.items_out)),
        el("td", {className: "num"}, `${s.batches_done}/${s.batches_total}`),
        el("td", {className: "num"}, fmtNum(s.credits)),
        el("td", {className: "num stage-duration"}, times ? stageDuration(run, s, times) : "…"));
    });
    $("run-stages").replaceChildren(...rows(null));
    await Promise.all([loadRunLog(), stageTimes(run).then((times) => {
      if (state.openRunId === runId) $("run-stages").replaceChildren(...rows(times));
    })]);
  } catch (error) {
    $("run-log").replaceChildren(el("div", {className: "log-empty error"}, `Could not load the run: ${error.message}`));
  }
}

function showRunLog() {
  const level = $("run-log-level").value;
  const shown = filterLog(runLog, level);
  renderLog($("run-log"), shown, {empty: "(no log lines)", hidden: level === "summary" ? runLog.length - shown.length : 0});
}

export async function loadRunLog() {
  const stage = $("run-log-stage").value;
  const runId = state.openRunId;
  try {
    const {data} = await api("/logs/", {params: {run_id: runId, lines: 500, stage}});
    if (runId !== state.openRunId) return;
    runLog = parseLog(data.lines);
    showRunLog();
  } catch (error) {
    $("run-log").replaceChildren(el("div", {className: "log-empty error"}, `Could not load the log: ${error.message}`));
  }
}

/** The run modal's log filters: "all", then one option per stage of the catalogue; the level; the download. */
export function buildRunLogStages() {
  $("run-log-stage").replaceChildren(el("option", {value: ""}, "all"),
    ...allStages().map((s) => el("option", {value: s.number}, `${s.number}. ${stageName(s.number)}`)));
}

export function wireRunModal() {
  $("run-log-stage").addEventListener("change", loadRunLog);
  $("run-log-level").addEventListener("change", showRunLog);
  $("run-log-download").addEventListener("click", () => {
    const stage = $("run-log-stage").value;
    saveText(logText(runLog), `${state.openRunId}${stage ? `-stage-${stage}` : ""}.log`);
  });
}
