/* The current run: its stage cards, overall progress, what to do next, the activity log, the estimate and run
   control (start, pause, resume), all kept fresh by ONE poll loop.

   The loop, per site:
   - while a run is running, every 3 s: current_run, its log, the history table and the balance (4 requests,
     80 a minute), so the cards, the history row and the header's balance agree with the API within one poll;
   - otherwise (idle, or a paused run), every 5 s: the newest runs (history/, which is also the table when no
     filter is set) or, while a run is paused, current_run; the balance every third tick (16 requests a minute).
     A run that started and ended between two ticks is the newest in history/: it is shown as soon as it is seen.
   Whenever the shown run changes (a new run, running -> paused, the end of a run) the log, history, balance,
   content and the credits panel are read once more. */

import {loadCredits} from "./account.js";
import {api, apiKey} from "./api.js";
import {allStages, stageName} from "./catalogue.js";
import {ICONS, historyFilters, loadHistory} from "./history.js";
import {filterLog, logText, parseLog, renderLog, saveText} from "./log.js";
import {loadReview} from "./review.js";
import {$, el, fmtDate, fmtDuration, fmtNum, notify, showModal, state} from "./ui.js";

export const RUNNING_POLL_MS = 3000;
export const IDLE_POLL_MS = 5000;
const CREDITS_EVERY_IDLE_TICKS = 3;
const RESUME_WATCH_MS = 15000;  // a run that pauses again this soon after Resume is explained
const ETA_FROM = 0.05;          // no ETA before 5 % of the run is done

const isCreditPause = (run) => Boolean(run && run.status === "paused" && /credit/i.test(run.pause_reason || ""));
/** A stage as the page shows it: the API calls a paused run's current stage "active"; it is paused. */
const shownStatus = (run, s) => (s.status === "active" && run && run.status === "paused" ? "paused" : s.status);

// ---------- stage cards, progress and the run's notice ----------
export function renderStages(run) {
  const byStage = {};
  if (run && run.stages) for (const s of run.stages) byStage[s.stage] = s;
  const cards = allStages().map(({number: n}) => {
    const s = byStage[n] || {status: "pending", items_in: 0, items_out: 0, batches_done: 0, batches_total: 0, credits: 0};
    const status = shownStatus(run, s);
    const pct = s.batches_total ? Math.round((100 * s.batches_done) / s.batches_total) : (s.status === "completed" ? 100 : 0);
    return el("div", {className: `stage-card ${status}`, dataset: {stage: n, status}},
      el("div", {className: "stage-head"},
        el("span", {className: "stage-number"}, `Stage ${n}`),
        el("span", {className: "stage-state"}, el("span", {className: "stage-label"}, status),
          el("span", {className: "stage-icon", title: status, "aria-label": status}, ICONS[status] || "⏳"))),
      el("div", {className: "stage-name"}, stageName(n)),
      el("div", {className: "bar"}, el("div", {className: "bar-fill", style: `width:${pct}%`})),
      el("dl", {},
        el("dt", {}, "Items"), el("dd", {className: "items"}, `${fmtNum(s.items_in)} → ${fmtNum(s.items_out)}`),
        el("dt", {}, "Batches"), el("dd", {className: "batches"}, `${fmtNum(s.batches_done)} / ${fmtNum(s.batches_total)}`),
        el("dt", {}, "Credits"), el("dd", {className: "stage-credits"}, fmtNum(s.credits))));
  });
  $("stages").replaceChildren(...cards);
  const summary = $("run-summary");
  renderProgress(run);
  renderNotice(run);
  if (!run) { summary.replaceChildren("No run yet"); return; }
  summary.replaceChildren(
    el("span", {className: `badge ${run.status}`, id: "run-status"}, run.status), " ",
    el("code", {}, run.run_id), ` · ${run.trigger} · started ${fmtDate(run.started_at)}`,
    run.completed_at ? ` · completed ${fmtDate(run.completed_at)}` : "",
    " · ", el("span", {id: "run-credits"}, fmtNum(run.total_credits_used)),
    ` credits (est. ${fmtNum(run.estimated_credits)})`);
}

/** How far the run is, 0..1: whole stages done, plus the current stage's share of batches done. */
function progressOf(run) {
  const total = allStages().length || 7;
  if (run.status === "completed") return 1;
  let done = 0;
  for (const s of run.stages || []) {
    if (s.status === "completed") done += 1;
    else if (s.batches_total) done += s.batches_done / s.batches_total;
  }
  return Math.min(1, done / total);
}

function renderProgress(run) {
  const box = $("run-progress");
  if (!run) { box.hidden = true; return; }
  box.hidden = false;
  const p = progressOf(run);
  const started = Date.parse(run.started_at);
  const end = run.completed_at ? Date.parse(run.completed_at) : Date.now();
  const elapsed = end - started;
  $("run-progress-fill").style.width = `${Math.round(p * 100)}%`;
  $("run-progress-bar").setAttribute("aria-valuenow", String(Math.round(p * 100)));
  const parts = [`${Math.round(p * 100)} %`, run.completed_at ? `took ${fmtDuration(elapsed)}` : `elapsed ${fmtDuration(elapsed)}`];
  if (run.status === "running") {
    parts.unshift(`stage ${run.current_stage} of ${allStages().length}`);
    parts.push(p >= ETA_FROM && p < 1 ? `about ${fmtDuration((elapsed * (1 - p)) / p)} left at this pace` : "estimating time left…");
  }
  $("run-progress-text").textContent = parts.join(" · ");
}

function renderNotice(run) {
  const box = $("run-notice");
  if (!run || run.status === "running") { box.hidden = true; box.replaceChildren(); return; }
  let kind; let head; let next;
  if (run.status === "completed") {
    kind = "ok";
    head = `Run completed${run.completed_at ? ` in ${fmtDuration(Date.parse(run.completed_at) - Date.parse(run.started_at))}` : ""}: `
      + `${fmtNum(run.total_credits_used)} credits used.`;
    next = "Its articles wait in Content → Review.";
  } else if (run.status === "paused") {
    kind = "warn";
    head = `Run paused at stage ${run.current_stage}: ${run.pause_reason || "paused"}.`;
    next = isCreditPause(run)
      ? `Add credits to the account (balance ${$("credits").textContent}), then press Resume.`
      : "Press Resume to continue where it stopped.";
  } else {
    kind = "error";
    head = `Run failed at stage ${run.current_stage}: ${run.error_message || "see the log"}.`;
    next = "Resume retries it from that stage.";
  }
  box.className = `run-notice ${kind}`;
  box.dataset.status = run.status;
  box.replaceChildren(el("strong", {}, head), " ", el("span", {className: "next-action"}, next));
  box.hidden = false;
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

// ---------- the poll loop ----------
let tick = 0;
let polledSite = null;
let resumeWatch = null;  // {runId, until}: Resume was pressed; a pause this soon is explained

export function stopPolling() {
  clearTimeout(state.timers.poll);
  state.timers.poll = null;
}

/** (Re)start the loop now: a site was chosen, or something the page did changed the run. */
export function startPolling() {
  stopPolling();
  return poll();
}

const runKey = (run) => (run ? `${run.run_id}:${run.status}` : "");

async function poll() {
  clearTimeout(state.timers.poll);
  const siteId = state.siteId;
  if (siteId === null || !apiKey()) return;
  tick += 1;
  const initial = polledSite !== siteId;  // the site's first tick: selectSite has read its content already
  polledSite = siteId;
  let running = false;
  try {
    const before = runKey(state.shown);
    let newest = null;
    if (state.active) {
      const {data} = await api("/current_run/", {params: {site_id: siteId}});
      if (siteId !== state.siteId) return;
      if (data.run) state.shown = state.active = data.run;
      else {  // it ended since the last tick: its final state
        const ended = state.active;
        state.active = null;
        state.shown = (await api(`/runs/${encodeURIComponent(ended.run_id)}`)).data;
      }
    } else {
      const {data: hist} = await api("/history/", {params: {site_id: siteId}});
      if (siteId !== state.siteId) return;
      newest = hist.runs;
      const first = hist.runs[0];
      if (first && (first.status === "running" || first.status === "paused")) {
        const {data} = await api("/current_run/", {params: {site_id: siteId}});
        state.active = data.run;
        state.shown = data.run || (await api(`/runs/${encodeURIComponent(first.run_id)}`)).data;
      } else if (first && runKey(first) !== before) {
        // a run the page has not shown: it may have started and ended between two ticks
        state.shown = (await api(`/runs/${encodeURIComponent(first.run_id)}`)).data;
      } else if (!first) state.shown = null;
    }
    if (siteId !== state.siteId) return;
    running = Boolean(state.active && state.active.status === "running");
    const changed = runKey(state.shown) !== before;
    renderStages(state.shown);
    updateButtons();
    const work = [];
    if (running || changed) work.push(pollLog(), loadCredits());
    else if (tick % CREDITS_EVERY_IDLE_TICKS === 0) work.push(loadCredits());
    if (running || changed || (newest && !historyFilters())) work.push(loadHistory(newest));
    if (changed && !initial && state.shown && !running) {  // a transition (the site's content is loaded already)
      work.push(loadReview());
      document.dispatchEvent(new CustomEvent("run-changed", {detail: {run: state.shown}}));
    }
    await Promise.all(work.map((p) => Promise.resolve(p).catch(() => {})));
    if (changed) renderNotice(state.shown);  // with the balance just read
    watchResume();
  } catch (error) {
    if (error.status !== 401) notify(`Could not refresh the run: ${error.message}`, "error");
  } finally {
    if (apiKey() && siteId === state.siteId) {
      state.timers.poll = setTimeout(poll, running ? RUNNING_POLL_MS : IDLE_POLL_MS);
    }
  }
}

/** After Resume: a run that pauses again at once for credits says so, with what to do. */
function watchResume() {
  if (!resumeWatch) return;
  const run = state.shown;
  if (Date.now() > resumeWatch.until || !run || run.run_id !== resumeWatch.runId) { resumeWatch = null; return; }
  if (run.status === "paused" && isCreditPause(run)) {
    resumeWatch = null;
    notify(`The run paused again at once: not enough credits (balance ${$("credits").textContent}). `
      + "Add credits to the account, then press Resume.", "error");
  }
}

// ---------- the activity log ----------
let logLines = [];

function showLog() {
  const level = $("log-level").value;
  const shown = filterLog(logLines, level);
  renderLog($("log"), shown, {hidden: level === "summary" ? logLines.length - shown.length : 0});
}

export async function pollLog() {
  const run = state.shown;
  if (!run) {
    logLines = [];
    $("log").replaceChildren(el("div", {className: "log-empty"}, "No run yet."));
    $("log-run").textContent = "";
    return;
  }
  try {
    const {data} = await api("/logs/", {params: {run_id: run.run_id, lines: $("log-lines").value}});
    if (!state.shown || state.shown.run_id !== run.run_id) return;
    logLines = parseLog(data.lines);
    showLog();
    $("log-run").textContent = run.run_id;
  } catch (error) {
    if (error.status !== 401) $("log").replaceChildren(el("div", {className: "log-empty error"}, `Could not load the log: ${error.message}`));
  }
}

async function downloadLog() {
  const run = state.shown;
  if (!run) return;
  try {
    const {data} = await api("/logs/", {params: {run_id: run.run_id, lines: 500}});
    saveText(logText(parseLog(data.lines)), `${run.run_id}.log`);
  } catch (error) {
    if (error.status !== 401) notify(`Could not download the log: ${error.message}`, "error");
  }
}

export function wireLog() {
  $("log-lines").addEventListener("change", pollLog);
  $("log-level").addEventListener("change", showLog);
  $("log-download").addEventListener("click", downloadLog);
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
    state.active = data.run_id ? {run_id: data.run_id, status: "running"} : null;
    await startPolling();
  } catch (error) {
    if (error.status === 401) return;
    $("estimate-message").textContent = refusalMessage(error);
    if (error.status === 409) startPolling();
  }
}

/** "need about 1,234" in a credit pause's reason: what the rest of the run costs; null when it does not say. */
function creditsNeeded(reason) {
  const match = /need about ([\d,]+)/.exec(reason || "");
  return match ? Number(match[1].replace(/,/g, "")) : null;
}

export async function control(action) {
  const run = state.shown;
  if (!run) return;
  state.busy = true;
  updateButtons();
  try {
    if (action === "resume" && isCreditPause(run)) {
      const {data: credits} = await api("/credits/");
      $("credits").textContent = fmtNum(credits.credits_balance);
      const needed = creditsNeeded(run.pause_reason);
      if (credits.credits_balance <= 0 || (needed !== null && credits.credits_balance < needed)) {
        notify(`Not resumed: the run paused for credits and the balance is ${fmtNum(credits.credits_balance)}`
          + `${needed !== null ? ` while the remaining stages need about ${fmtNum(needed)}` : ""}. `
          + "Add credits to the account, then press Resume.", "error");
        return;
      }
    }
    const {data} = await api(`/${action}/`, {method: "POST", params: {run_id: run.run_id}});
    if (action === "resume") {
      resumeWatch = {runId: run.run_id, until: Date.now() + RESUME_WATCH_MS};
      if (data.status === "paused" && isCreditPause(data)) watchResume();
      else notify(`Run ${data.run_id} is ${data.status}.`);
    } else notify(`Run ${data.run_id} is ${data.status}.`);
    state.active = data.status === "running" || data.status === "paused" ? data : state.active;
  } catch (error) {
    if (error.status !== 401) notify(`Could not ${action} the run: ${error.message}`, "error");
  } finally {
    state.busy = false;
    await startPolling();
  }
}
