/* The current run: its stage cards, polling, the activity log, the estimate and run control (start, pause, resume). */

import {loadCredits} from "./account.js";
import {api, apiKey} from "./api.js";
import {allStages, stageName} from "./catalogue.js";
import {ICONS, loadHistory} from "./history.js";
import {loadReview} from "./review.js";
import {$, el, fmtDate, fmtNum, notify, showModal, state} from "./ui.js";

const RUN_POLL_MS = 2500;   // current_run while a run is active (the API asks for at most every 5 s)
const IDLE_POLL_MS = 5000;  // current_run when no run is active (picks up scheduled runs)
const LOG_POLL_MS = 3000;
const SLOW_POLL_MS = 15000;  // the credit balance

// ---------- stage cards ----------
export function renderStages(run) {
  const byStage = {};
  if (run && run.stages) for (const s of run.stages) byStage[s.stage] = s;
  const cards = allStages().map(({number: n}) => {
    const s = byStage[n] || {status: "pending", items_in: 0, items_out: 0, batches_done: 0, batches_total: 0, credits: 0};
    const pct = s.batches_total ? Math.round((100 * s.batches_done) / s.batches_total) : (s.status === "completed" ? 100 : 0);
    return el("div", {className: `stage-card ${s.status}`, dataset: {stage: n, status: s.status}},
      el("div", {className: "stage-head"},
        el("span", {className: "stage-number"}, `Stage ${n}`),
        el("span", {className: "stage-state"}, el("span", {className: "stage-label"}, s.status),
          el("span", {className: "stage-icon", title: s.status, "aria-label": s.status}, ICONS[s.status] || "⏳"))),
      el("div", {className: "stage-name"}, stageName(n)),
      el("div", {className: "bar"}, el("div", {className: "bar-fill", style: `width:${pct}%`})),
      el("dl", {},
        el("dt", {}, "Items"), el("dd", {className: "items"}, `${fmtNum(s.items_in)} → ${fmtNum(s.items_out)}`),
        el("dt", {}, "Batches"), el("dd", {className: "batches"}, `${fmtNum(s.batches_done)} / ${fmtNum(s.batches_total)}`),
        el("dt", {}, "Credits"), el("dd", {className: "stage-credits"}, fmtNum(s.credits))));
  });
  $("stages").replaceChildren(...cards);
  const summary = $("run-summary");
  if (!run) { summary.replaceChildren("No run yet"); return; }
  summary.replaceChildren(
    el("span", {className: `badge ${run.status}`, id: "run-status"}, run.status), " ",
    el("code", {}, run.run_id), ` · ${run.trigger} · started ${fmtDate(run.started_at)}`,
    run.completed_at ? ` · completed ${fmtDate(run.completed_at)}` : "",
    ` · ${fmtNum(run.total_credits_used)} credits (est. ${fmtNum(run.estimated_credits)})`,
    run.pause_reason && run.status === "paused" ? ` · ${run.pause_reason}` : "",
    run.error_message ? el("span", {className: "error"}, ` · ${run.error_message}`) : "");
}

export function updateButtons() {
  const hasSite = state.siteId !== null;
  const shown = state.shown;
  $("run-now").disabled = state.busy || !hasSite || state.active !== null;
  $("pause").disabled = state.busy || !shown || shown.status !== "running";
  $("resume").disabled = state.busy || !shown || !(shown.status === "paused" || (shown.status === "failed" && !state.active));
  $("configure").disabled = !hasSite;
  $("current-export").disabled = !shown || shown.status !== "completed";
}

// ---------- polling ----------
export function stopPolling() {
  for (const name of ["run", "log", "slow"]) { clearTimeout(state.timers[name]); state.timers[name] = null; }
}

export async function pollRun() {
  clearTimeout(state.timers.run);
  const siteId = state.siteId;
  if (siteId === null) return;
  try {
    const {data} = await api("/current_run/", {params: {site_id: siteId}});
    if (siteId !== state.siteId) return;
    const wasActive = state.active;
    state.active = data.run;
    if (data.run) {
      state.shown = data.run;
    } else if (wasActive || (state.shown && ["running", "paused"].includes(state.shown.status))) {
      // the run just ended: show its final state, and refresh what it changed
      state.shown = (await api(`/runs/${encodeURIComponent((wasActive || state.shown).run_id)}`)).data;
      loadHistory(); loadReview(); loadCredits(); pollLog();
    } else if (!state.shown) {
      const {data: hist} = await api("/history/", {params: {site_id: siteId}});
      state.shown = hist.runs.length ? (await api(`/runs/${encodeURIComponent(hist.runs[0].run_id)}`)).data : null;
    }
    if (data.run && !wasActive) loadHistory();
    renderStages(state.shown);
    updateButtons();
  } catch (error) {
    if (error.status !== 401) notify(`Could not refresh the run: ${error.message}`, "error");
  } finally {
    if (apiKey() && siteId === state.siteId) state.timers.run = setTimeout(pollRun, state.active ? RUN_POLL_MS : IDLE_POLL_MS);
  }
}

export async function pollLog() {
  clearTimeout(state.timers.log);
  try {
    const run = state.shown;
    if (run) {
      const {data} = await api("/logs/", {params: {run_id: run.run_id, lines: $("log-lines").value}});
      const pre = $("log");
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.textContent = data.lines.length ? data.lines.join("\n") : "(no log lines yet)";
      if (atBottom) pre.scrollTop = pre.scrollHeight;
      $("log-run").textContent = run.run_id;
    } else {
      $("log").textContent = "No run yet.";
      $("log-run").textContent = "";
    }
  } catch (error) {
    if (error.status !== 401) $("log").textContent = `Could not load the log: ${error.message}`;
  } finally {
    if (apiKey()) state.timers.log = setTimeout(pollLog, LOG_POLL_MS);
  }
}

export async function pollSlow() {
  clearTimeout(state.timers.slow);
  try { await loadCredits(); } catch (_) { /* shown by the next refresh */ }
  if (apiKey()) state.timers.slow = setTimeout(pollSlow, SLOW_POLL_MS);
}

// ---------- run control ----------
export async function runNowClicked() {
  if (state.siteId === null) return;
  $("estimate-body").replaceChildren(el("tr", {}, el("td", {}, "Estimating…")));
  $("estimate-message").textContent = "";
  $("estimate-start").disabled = true;
  showModal("estimate-modal", true);
  try {
    const {data: est} = await api("/estimate/", {params: {site_id: state.siteId}});
    const rows = Object.entries(est.per_stage).map(([stage, credits]) =>
      el("tr", {}, el("td", {}, `Stage ${stage} · ${stageName(stage)}`), el("td", {className: "num"}, fmtNum(credits))));
    rows.push(el("tr", {className: "total"}, el("td", {}, "Estimated total"), el("td", {className: "num", id: "estimate-total"}, fmtNum(est.total))));
    rows.push(el("tr", {}, el("td", {}, `Required (with ${Math.round(est.buffer * 100)}% buffer)`),
      el("td", {className: "num", id: "estimate-required"}, fmtNum(est.required))));
    rows.push(el("tr", {}, el("td", {}, "Your balance"), el("td", {className: "num", id: "estimate-balance"}, fmtNum(est.balance))));
    $("estimate-body").replaceChildren(...rows);
    if (!est.can_start) {
      $("estimate-message").textContent = est.reason === "insufficient credits"
        ? `Not enough credits: this run needs ${fmtNum(est.required)} (estimate ${fmtNum(est.total)} + ${Math.round(est.buffer * 100)}% buffer) and the balance is ${fmtNum(est.balance)}.`
        : `Cannot start: ${est.reason}.`;
    }
    $("estimate-start").disabled = !est.can_start;
  } catch (error) {
    $("estimate-message").textContent = `Could not get the estimate: ${error.message}`;
  }
}

function refusalMessage(error) {
  const b = error.body || {};
  if (error.status === 409) return `A run is already active on this site${b.active_run_id ? ` (${b.active_run_id})` : ""}.`;
  if (error.status === 402) {
    return `Not enough credits: this run needs ${fmtNum(b.required)} (estimate ${fmtNum(b.estimate)} + `
      + `${Math.round((b.buffer || 0) * 100)}% buffer) and the balance is ${fmtNum(b.balance)}.`;
  }
  return `The run could not be started: ${error.message}`;
}

export async function startRun() {
  $("estimate-start").disabled = true;
  try {
    const {data} = await api("/run_now/", {method: "POST", params: {site_id: state.siteId}});
    showModal("estimate-modal", false);
    notify(data.run_id ? `Run ${data.run_id} started.` : "Run requested; it will appear shortly.");
    state.shown = null;
    await pollRun();
    loadHistory();
    pollLog();
  } catch (error) {
    if (error.status === 401) return;
    $("estimate-message").textContent = refusalMessage(error);
    if (error.status === 409) pollRun();
  }
}

export async function control(action) {
  const run = state.shown;
  if (!run) return;
  state.busy = true;
  updateButtons();
  try {
    const {data} = await api(`/${action}/`, {method: "POST", params: {run_id: run.run_id}});
    notify(`Run ${data.run_id} is ${data.status}.`);
  } catch (error) {
    if (error.status !== 401) notify(`Could not ${action} the run: ${error.message}`, "error");
  } finally {
    state.busy = false;
    await pollRun();
    loadHistory();
  }
}
