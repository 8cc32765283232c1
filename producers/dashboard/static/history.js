/* Run history: the filtered table, and one run's per-stage detail and log in a modal. */

import {api} from "./api.js";
import {allStages, stageName} from "./catalogue.js";
import {$, el, fmtDate, fmtNum, notify, showModal, state} from "./ui.js";

export const ICONS = {pending: "⏳", active: "🔄", completed: "✅", failed: "❌"};

export async function loadHistory() {
  if (state.siteId === null) return;
  const params = {site_id: state.siteId, status: $("filter-status").value, trigger: $("filter-trigger").value,
    date_from: $("filter-from").value, date_to: $("filter-to").value};
  try {
    const {data} = await api("/history/", {params});
    const rows = data.runs.map((run) => el("tr", {className: "clickable", dataset: {runId: run.run_id},
      onclick: () => openRun(run.run_id), tabindex: "0", onkeydown: (e) => { if (e.key === "Enter") openRun(run.run_id); }},
      el("td", {}, el("code", {}, run.run_id)),
      el("td", {}, el("span", {className: `badge ${run.status}`}, run.status)),
      el("td", {}, run.trigger),
      el("td", {}, fmtDate(run.started_at)),
      el("td", {}, fmtDate(run.completed_at)),
      el("td", {className: "num"}, fmtNum(run.total_credits_used)),
      el("td", {className: "num", title: stageName(run.current_stage)}, `${run.current_stage}/${allStages().length}`)));
    $("history-body").replaceChildren(...rows);
    $("history-empty").hidden = rows.length > 0;
  } catch (error) {
    if (error.status !== 401) notify(`Could not load the history: ${error.message}`, "error");
  }
}

export async function openRun(runId) {
  state.openRunId = runId;
  $("run-title").textContent = `Run ${runId}`;
  $("run-stages").replaceChildren();
  $("run-log").textContent = "Loading…";
  $("run-export-message").textContent = "";
  $("run-log-stage").value = "";
  showModal("run-modal", true);
  try {
    const {data: run} = await api(`/runs/${encodeURIComponent(runId)}`);
    $("run-meta").replaceChildren(el("span", {className: `badge ${run.status}`}, run.status),
      ` ${run.trigger} · started ${fmtDate(run.started_at)} · completed ${fmtDate(run.completed_at)} · `
      + `${fmtNum(run.total_credits_used)} credits used of ${fmtNum(run.estimated_credits)} estimated`,
      run.error_message ? el("span", {className: "error"}, ` · ${run.error_message}`) : "");
    $("run-stages").replaceChildren(...run.stages.map((s) => el("tr", {dataset: {stage: s.stage, status: s.status}},
      el("td", {}, `${s.stage}. ${stageName(s.stage)}`),
      el("td", {}, `${ICONS[s.status]} ${s.status}`),
      el("td", {className: "num"}, fmtNum(s.items_in)), el("td", {className: "num"}, fmtNum(s.items_out)),
      el("td", {className: "num"}, `${s.batches_done}/${s.batches_total}`),
      el("td", {className: "num"}, fmtNum(s.credits)))));
    await loadRunLog();
  } catch (error) {
    $("run-log").textContent = `Could not load the run: ${error.message}`;
  }
}

export async function loadRunLog() {
  const stage = $("run-log-stage").value;
  try {
    const {data} = await api("/logs/", {params: {run_id: state.openRunId, lines: 500, stage}});
    $("run-log").textContent = data.lines.join("\n") || "(no log lines)";
  } catch (error) {
    $("run-log").textContent = `Could not load the log: ${error.message}`;
  }
}

/** The run modal's log filter: "all", then one option per stage of the catalogue. */
export function buildRunLogStages() {
  $("run-log-stage").replaceChildren(el("option", {value: ""}, "all"),
    ...allStages().map((s) => el("option", {value: s.number}, `${s.number}. ${stageName(s.number)}`)));
}
