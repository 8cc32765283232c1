/* The Credits panel: the account's usage per day (bars) and per stage (bars), the balance over time (line), usage
   per run, top-ups and the forecast (spend in the next 7 and 30 days, when the balance runs out, and whether each
   scheduled run can be paid). Charts are drawn by uPlot, vendored in static/vendor/uplot/ (no CDN); every chart
   has its figures as a table too, and every table downloads as the API's CSV. The panel is read when it comes
   into view (and again after a run while in view), not on every page load. */

import {api, download} from "./api.js";
import {stageName} from "./catalogue.js";
import {$, el, fmtDate, fmtNum, state} from "./ui.js";

const CHART_HEIGHT = 190;
const SLOTS_SHOWN = 40;
const RUNS_SHOWN = 10;
const COLORS = {bar: "#2855d8", barFill: "rgba(40, 85, 216, .55)", stage: "#1a7f37", stageFill: "rgba(26, 127, 55, .5)",
  line: "#9a6700", lineFill: "rgba(154, 103, 0, .12)"};

const CSV = {
  "usage-day": ["/credits/usage/", () => ({group: "day", days: days(), format: "csv"})],
  "usage-stage": ["/credits/usage/", () => ({group: "stage", days: days(), format: "csv"})],
  "usage-run": ["/credits/usage/", () => ({group: "run", days: days(), format: "csv"})],
  balance: ["/credits/balance/", () => ({days: days(), format: "csv"})],
  forecast: ["/credits/forecast/", () => ({format: "csv"})],
};

const charts = {};  // name -> uPlot
let loading = 0;
const days = () => Number($("credits-days").value);
const dayStamp = (iso) => Date.parse(`${iso}T00:00:00Z`) / 1000;  // a UTC day as uPlot's seconds

function siteOf(id) {
  return (state.sites || []).find((s) => s.id === Number(id)) || null;
}

// ---------- charts ----------
function chartWidth(box) {
  return Math.max(220, Math.floor(box.clientWidth || box.parentElement.clientWidth || 300));
}

function draw(name, options, data) {
  const box = $(`chart-${name}`);
  if (charts[name]) { charts[name].destroy(); delete charts[name]; }
  box.dataset.points = String(data[0].length);
  if (typeof window.uPlot !== "function") {
    box.replaceChildren(el("p", {className: "muted"}, "The chart library did not load: the figures are in the table below."));
    return;
  }
  box.replaceChildren();
  charts[name] = new window.uPlot({width: chartWidth(box), height: CHART_HEIGHT, legend: {show: true}, ...options}, data, box);
}

const utcDates = (ts) => window.uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC");
const numberAxis = {size: 64, values: (u, splits) => splits.map((v) => fmtNum(v))};
const dayAxis = {values: (u, splits) => splits.map((ts) => new Date(ts * 1000).toISOString().slice(5, 10))};  // MM-DD

function bars(stroke, fill) {
  return {stroke, fill, width: 1, paths: window.uPlot && window.uPlot.paths.bars({size: [0.7, 48]}), points: {show: false}};
}

function drawUsageByDay(points, usage) {
  const byDay = new Map(usage.map((r) => [r.key, r.credits]));
  const xs = points.map((p) => dayStamp(p.day));
  const ys = points.map((p) => byDay.get(p.day) || 0);
  draw("usage-day", {tzDate: utcDates, scales: {x: {time: true}},
    series: [{label: "Day"}, {label: "Credits used", ...bars(COLORS.bar, COLORS.barFill),
      value: (u, v) => (v === null ? "–" : fmtNum(v))}],
    axes: [dayAxis, numberAxis]}, [xs, ys]);
}

function drawUsageByStage(usage) {
  const byStage = new Map(usage.map((r) => [Number(r.key), r.credits]));
  const xs = Array.from({length: 7}, (_, i) => i + 1);
  draw("usage-stage", {scales: {x: {time: false, range: [0.4, 7.6]}},
    series: [{label: "Stage", value: (u, v) => (v === null ? "–" : `${v}. ${stageName(v)}`)},
      {label: "Credits used", ...bars(COLORS.stage, COLORS.stageFill), value: (u, v) => (v === null ? "–" : fmtNum(v))}],
    axes: [{splits: () => xs, values: (u, splits) => splits.map((v) => `S${v}`)}, numberAxis]},
  [xs, xs.map((n) => byStage.get(n) || 0)]);
}

function drawBalance(points) {
  draw("balance", {tzDate: utcDates, scales: {x: {time: true}},
    series: [{label: "Day"}, {label: "Balance", stroke: COLORS.line, fill: COLORS.lineFill, width: 2,
      value: (u, v) => (v === null ? "–" : fmtNum(v))}],
    axes: [dayAxis, numberAxis]}, [points.map((p) => dayStamp(p.day)), points.map((p) => p.balance)]);
}

function resizeCharts() {
  for (const [name, chart] of Object.entries(charts)) chart.setSize({width: chartWidth($(`chart-${name}`)), height: CHART_HEIGHT});
}

// ---------- tables and figures ----------
const row = (...cells) => el("tr", {}, ...cells);
const td = (text, num = false) => el("td", {className: num ? "num" : null}, text);

function renderTables({day, stage, run, balance, topUps}) {
  $("table-usage-day").replaceChildren(...day.rows.map((r) => row(td(r.key), td(fmtNum(r.credits), true), td(fmtNum(r.charges), true))));
  $("table-usage-stage").replaceChildren(...stage.rows.map((r) => el("tr", {dataset: {stage: r.key}},
    td(`${r.key}. ${stageName(r.key)}`), td(fmtNum(r.credits), true), td(fmtNum(r.charges), true))));
  const runs = [...run.rows].sort((a, b) => b.credits - a.credits);
  $("table-usage-run").replaceChildren(...runs.slice(0, RUNS_SHOWN).map((r) => el("tr", {dataset: {runId: r.key}},
    td(el("code", {}, r.key)), td(fmtNum(r.credits), true), td(fmtNum(r.charges), true))),
  ...(runs.length > RUNS_SHOWN ? [row(el("td", {colspan: 3, className: "muted"}, `… ${fmtNum(runs.length - RUNS_SHOWN)} more in the CSV`))] : []),
  ...(runs.length ? [] : [row(el("td", {colspan: 3, className: "muted"}, "No credits used in this period."))]));
  $("table-balance").replaceChildren(...balance.points.map((p) => row(td(p.day), td(fmtNum(p.balance), true),
    td(fmtNum(p.charged), true), td(fmtNum(p.added), true))));
  $("table-top-ups").replaceChildren(...topUps.top_ups.slice(0, 10).map((t) => row(td(fmtDate(t.at)), td(fmtNum(t.credits), true),
    td(t.reason))), ...(topUps.top_ups.length ? [] : [row(el("td", {colspan: 3, className: "muted"}, "None yet."))]));
  $("credits-summary").textContent = `${fmtNum(day.total)} credits used in the last ${days()} days (every site of the account)`;
}

function renderForecast(fc) {
  $("fc-balance").textContent = fmtNum(fc.balance);
  $("fc-spend-7").textContent = fmtNum(fc.spend_7_days);
  $("fc-spend-30").textContent = fmtNum(fc.spend_30_days);
  const runsOut = $("fc-runs-out");
  runsOut.textContent = fc.runs_out_at ? fmtDate(fc.runs_out_at, {seconds: false, weekday: true}) : "not within 30 days";
  runsOut.className = fc.runs_out_at ? "error" : "ok";
  const slots = fc.slots.slice(0, SLOTS_SHOWN).map((s) => {
    const site = siteOf(s.site_id);
    return el("tr", {className: s.affordable ? "slot" : "slot unaffordable", dataset: {affordable: String(s.affordable)}},
      td(el("time", {datetime: s.at}, fmtDate(s.at, {zone: site ? site.timezone : undefined, seconds: false, weekday: true}))),
      td(site ? site.name : `site ${s.site_id}`),
      td(fmtNum(s.keywords), true), td(fmtNum(s.credits), true),
      td(s.affordable ? el("span", {className: "ok"}, "✓ yes") : el("span", {className: "error"}, "✗ no: skipped unless credits are added")),
      td(fmtNum(s.balance_after), true));
  });
  if (fc.slots.length > SLOTS_SHOWN) {
    slots.push(row(el("td", {colspan: 6, className: "muted"}, `… ${fmtNum(fc.slots.length - SLOTS_SHOWN)} more in the CSV`)));
  }
  $("forecast-slots").replaceChildren(...slots);
  $("forecast-empty").hidden = fc.slots.length > 0;
}

let stale = true;     // the panel's figures are older than the last run, site or period change
let inView = false;   // the panel is on screen: it is read only then (the page stays light)

/** Read the panel again when it is (or next comes) into view: after a run, a site change, a refresh. */
export function loadCreditsPanel() {
  stale = true;
  if (inView || typeof IntersectionObserver !== "function") return readPanel();
  return Promise.resolve();
}

async function readPanel() {
  if (state.siteId === null) return;
  stale = false;
  const request = ++loading;
  $("credits-message").textContent = "";
  try {
    const period = {days: days()};
    const [day, stage, run, balance, topUps, forecast] = (await Promise.all([
      api("/credits/usage/", {params: {...period, group: "day"}}), api("/credits/usage/", {params: {...period, group: "stage"}}),
      api("/credits/usage/", {params: {...period, group: "run"}}), api("/credits/balance/", {params: period}),
      api("/credits/top_ups/"), api("/credits/forecast/")])).map((answer) => answer.data);
    if (request !== loading) return;
    renderTables({day, stage, run, balance, topUps});
    renderForecast(forecast);
    drawUsageByDay(balance.points, day.rows);
    drawUsageByStage(stage.rows);
    drawBalance(balance.points);
  } catch (error) {
    if (error.status !== 401 && request === loading) $("credits-message").textContent = `Could not load the credits: ${error.message}`;
  }
}

async function downloadCsv(button) {
  const [path, params] = CSV[button.dataset.csv];
  const message = $("csv-message");
  button.disabled = true;
  try {
    const name = await download(path, params(), `${button.dataset.csv}.csv`);
    message.className = "action-message ok";
    message.textContent = `${name} downloaded.`;
  } catch (error) {
    message.className = "action-message error";
    message.textContent = error.status === 401 ? "" : `Not downloaded: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

/** The panel's controls, wired once. */
export function wireCredits() {
  $("credits-refresh").addEventListener("click", readPanel);
  $("credits-days").addEventListener("change", readPanel);
  if (typeof IntersectionObserver === "function") {
    new IntersectionObserver((entries) => {
      inView = entries.some((e) => e.isIntersecting);
      if (inView && stale) readPanel();
    }).observe($("credits-panel"));
  }
  for (const button of document.querySelectorAll("#credits-panel button.csv")) {
    button.addEventListener("click", () => downloadCsv(button));
  }
  document.addEventListener("run-changed", (e) => { if (e.detail.run.status !== "running") loadCreditsPanel(); });
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(resizeCharts, 150); });
}
