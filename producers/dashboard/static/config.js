/* The configuration modal: the schedule (daily, some weekdays, some days of the month or a cron expression, at
   one or more times of day, in the site's timezone) with a live preview of the next five runs, the batch size of
   every batch stage and the publishing toggles; the API's errors in plain words beside each field. */

import {loadSites} from "./account.js";
import {api, plainMessage} from "./api.js";
import {batchStages, stageName} from "./catalogue.js";
import {loadHistory} from "./history.js";
import {closeTargetForm, loadTargets} from "./publishing.js";
import {$, el, fmtDate, notify, showModal, state} from "./ui.js";

const WEEKDAYS = [["mon", "Mon"], ["tue", "Tue"], ["wed", "Wed"], ["thu", "Thu"], ["fri", "Fri"], ["sat", "Sat"],
  ["sun", "Sun"]];
const MAX_TIMES = 24;
const PREVIEW_DELAY_MS = 350;
const BATCH_RANGE = "1–1000";
const SCHEDULE_FIELDS = ["frequency", "scheduled_times", "weekdays", "month_days", "cron", "timezone"];
const OTHER_FIELDS = ["is_enabled", "auto_publish", "skip_review"];
const batchField = (stage) => `stage_${stage.number}_batch_size`;
const configFields = () => [...SCHEDULE_FIELDS, ...OTHER_FIELDS, ...batchStages().map(batchField)];

// ---------- errors beside the fields ----------
function clearErrors(fields = null) {
  for (const span of document.querySelectorAll("#config-form .field-error")) {
    if (!fields || fields.includes(span.dataset.errorFor)) span.textContent = "";
  }
  for (const input of document.querySelectorAll("#config-form [aria-invalid]")) {
    const field = input.dataset.field || input.name;
    if (!fields || fields.includes(field)) input.removeAttribute("aria-invalid");
  }
  if (!fields) $("config-message").textContent = "";
}

/** A schedule refusal the API words itself (a 422 whose detail is a sentence): the field it is about. */
function fieldOfSentence(text) {
  if (/cron|day of week/i.test(text)) return "cron";
  if (/time(s)? of day/i.test(text)) return "scheduled_times";
  if (/weekday/i.test(text)) return "weekdays";
  if (/day of the month/i.test(text)) return "month_days";
  if (/timezone/i.test(text)) return "timezone";
  if (/frequency/i.test(text)) return "frequency";
  return null;
}

/** What each problem of a refusal says, in plain words: [{field, index, msg}]. */
function problemsOf(error) {
  const detail = error.body && error.body.detail;
  if (typeof detail === "string") return [{field: fieldOfSentence(detail), index: null, msg: detail}];
  if (!Array.isArray(detail)) return [{field: null, index: null, msg: error.message}];
  const fields = configFields();
  return detail.map((item) => {
    const loc = (item.loc || []).map(String).filter((part) => part !== "body");
    const field = fields.find((f) => f === loc[0]) || (loc[0] === "scheduled_time" ? "scheduled_times" : null);
    const index = loc.length > 1 && /^\d+$/.test(loc[1]) ? Number(loc[1]) : null;
    let msg = plainMessage(item);
    if (item.type === "too_short") {
      msg = {scheduled_times: "give at least one time of day", weekdays: "pick at least one weekday",
        month_days: "pick at least one day of the month"}[field] || msg;
    } else if (field === "cron" && item.type === "string_too_short") {
      msg = "a cron expression has five fields, e.g. 0 9 * * 1-5";
    } else if (field && /_batch_size$/.test(field)) {
      msg = `${msg}: a batch holds ${BATCH_RANGE} items`;
    } else if (field === "scheduled_times" && index !== null) {
      msg = `time ${index + 1}: ${msg}`;
    }
    return {field: field || null, index, msg, where: loc.join(".")};
  });
}

/** Problems beside their fields; returns the ones no field shows. */
function showErrors(problems) {
  const general = [];
  for (const {field, index, msg, where} of problems) {
    const span = field && document.querySelector(`#config-form [data-error-for="${field}"]`);
    if (!span) { general.push(where ? `${where}: ${msg}` : msg); continue; }
    span.textContent = span.textContent ? `${span.textContent}; ${msg}` : msg;
    const inputs = field === "scheduled_times" ? [...$("cfg-times").querySelectorAll("input")] : [$(`cfg-${field}`)];
    const marked = index !== null && inputs[index] ? [inputs[index]] : inputs;
    for (const input of marked) if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
  }
  return general;
}

// ---------- the schedule's fields ----------
function timeRow(value = "") {
  const input = el("input", {type: "text", inputmode: "numeric", maxlength: "5", placeholder: "09:00", value,
    className: "time-input", autocomplete: "off", dataset: {field: "scheduled_times"}});
  const remove = el("button", {type: "button", className: "small time-remove"}, "Remove");
  const row = el("li", {className: "time-row"}, input, remove);
  remove.addEventListener("click", () => { row.remove(); renumberTimes(); previewSoon(); });
  return row;
}

function renumberTimes() {
  const rows = [...$("cfg-times").children];
  rows.forEach((row, i) => {
    row.querySelector("input").setAttribute("aria-label", `Time ${i + 1} (HH:MM)`);
    const remove = row.querySelector(".time-remove");
    remove.setAttribute("aria-label", `Remove time ${i + 1}`);
    remove.disabled = rows.length === 1;  // a schedule keeps one time at least
  });
  $("cfg-time-add").disabled = rows.length >= MAX_TIMES;
}

function setTimes(times) {
  $("cfg-times").replaceChildren(...(times.length ? times : ["02:00"]).map((t) => timeRow(t)));
  renumberTimes();
}

function addTime() {
  const row = timeRow("");
  $("cfg-times").append(row);
  renumberTimes();
  row.querySelector("input").focus();
}

function showFrequency() {
  const frequency = $("cfg-frequency").value;
  $("cfg-times-field").hidden = frequency === "cron";
  $("cfg-weekdays-field").hidden = frequency !== "weekly";
  $("cfg-month_days-field").hidden = frequency !== "monthly";
  $("cfg-cron-field").hidden = frequency !== "cron";
}

const checked = (container) => [...container.querySelectorAll("input:checked")].map((i) => i.value);

/** The schedule as the form has it: the fields of its frequency only (the API keeps the others as stored). */
function readSchedule() {
  const frequency = $("cfg-frequency").value;
  const body = {frequency, timezone: $("cfg-timezone").value.trim()};
  if (frequency === "cron") {
    body.cron = $("cfg-cron").value.trim().replace(/\s+/g, " ");
  } else {
    body.scheduled_times = [...$("cfg-times").querySelectorAll("input")].map((i) => i.value.trim()).filter(Boolean);
  }
  if (frequency === "weekly") body.weekdays = checked($("cfg-weekdays"));
  if (frequency === "monthly") body.month_days = checked($("cfg-month_days")).map(Number);
  return body;
}

// ---------- the next five runs, as the schedule is edited ----------
let previewTimer = null;
let previewSeq = 0;

function previewSoon() {
  clearTimeout(previewTimer);
  $("cfg-preview-state").textContent = "updating…";
  previewTimer = setTimeout(preview, PREVIEW_DELAY_MS);
}

async function preview() {
  clearTimeout(previewTimer);
  if (state.siteId === null || $("config-modal").hidden) return;
  const seq = ++previewSeq;
  const schedule = readSchedule();
  try {
    const {data} = await api("/schedule_preview/", {method: "POST", params: {site_id: state.siteId}, body: schedule});
    if (seq !== previewSeq) return;  // a newer edit asked again
    clearErrors(SCHEDULE_FIELDS);
    $("cfg-preview-error").textContent = "";
    $("cfg-schedule-words").textContent = `Runs ${data.schedule}${$("cfg-is_enabled").checked ? ""
      : " — scheduled runs are off, so these are only the times they would run"}.`;
    $("cfg-next-runs").replaceChildren(...data.next_runs.map((at) => el("li", {},
      el("time", {datetime: at}, fmtDate(at, {zone: schedule.timezone, seconds: false, weekday: true})))));
    $("cfg-preview-state").textContent = `(in ${schedule.timezone})`;
  } catch (error) {
    if (seq !== previewSeq || error.status === 401) return;
    clearErrors(SCHEDULE_FIELDS);
    $("cfg-next-runs").replaceChildren();
    $("cfg-schedule-words").textContent = "";
    $("cfg-preview-state").textContent = "";
    const general = error.status === 422 ? showErrors(problemsOf(error)) : [error.message];
    $("cfg-preview-error").textContent = general.length ? `No preview: ${general.join("; ")}`
      : "No preview until the schedule is fixed (see the fields marked in red).";
  }
}

// ---------- open, save, close ----------
let skipReviewWas = false;  // skip_review as saved: turning it on needs a confirmation

/** The warning under "skip review": shown while it is on; turning it on asks for a confirmation too. */
function showSkipReviewWarning() {
  const on = $("cfg-skip_review").checked;
  $("skip-review-warning").hidden = !on;
  $("skip-review-confirm").hidden = !on || skipReviewWas;
  if (!on) $("cfg-skip_review_confirm").checked = false;
  document.querySelector('#config-form [data-error-for="skip_review"]').textContent = "";
}

export async function openConfig() {
  clearErrors();
  $("cfg-preview-error").textContent = "";
  $("cfg-next-runs").replaceChildren();
  $("cfg-schedule-words").textContent = "";
  showModal("config-modal", true);
  loadTargets();
  try {
    const {data: cfg} = await api("/config/", {params: {site_id: state.siteId}});
    $("cfg-is_enabled").checked = cfg.is_enabled;
    $("cfg-frequency").value = cfg.frequency;
    setTimes(cfg.scheduled_times && cfg.scheduled_times.length ? cfg.scheduled_times : [cfg.scheduled_time]);
    for (const box of $("cfg-weekdays").querySelectorAll("input")) box.checked = cfg.weekdays.includes(box.value);
    for (const box of $("cfg-month_days").querySelectorAll("input")) box.checked = cfg.month_days.includes(Number(box.value));
    $("cfg-cron").value = cfg.cron || "";
    $("cfg-timezone").value = cfg.timezone;
    showFrequency();
    for (const field of batchStages().map(batchField)) $(`cfg-${field}`).value = cfg[field];
    $("cfg-auto_publish").checked = cfg.auto_publish;
    $("cfg-skip_review").checked = cfg.skip_review;
    skipReviewWas = cfg.skip_review;
    $("cfg-skip_review_confirm").checked = false;
    showSkipReviewWarning();
    $("cfg-next").textContent = cfg.is_enabled ? fmtDate(cfg.next_run_at, {zone: cfg.timezone, seconds: false, weekday: true})
      : "– (scheduled runs are off)";
    $("cfg-last").textContent = fmtDate(cfg.last_run_at, {zone: cfg.timezone});
    await preview();
  } catch (error) {
    $("config-message").textContent = `Could not load the configuration: ${error.message}`;
  }
}

function readConfigForm() {
  const body = {is_enabled: $("cfg-is_enabled").checked, ...readSchedule(), auto_publish: $("cfg-auto_publish").checked,
    skip_review: $("cfg-skip_review").checked};  // always explicit
  for (const field of batchStages().map(batchField)) {
    const raw = $(`cfg-${field}`).value.trim();
    const num = Number(raw);
    body[field] = raw !== "" && Number.isFinite(num) ? num : raw;  // the API explains what's wrong
  }
  return body;
}

export async function saveConfig(event) {
  event.preventDefault();
  clearErrors();
  if ($("cfg-skip_review").checked && !skipReviewWas && !$("cfg-skip_review_confirm").checked) {
    showErrors([{field: "skip_review", index: null,
      msg: "Confirm that this site's content will be approved without human review, or leave it off."}]);
    $("cfg-skip_review_confirm").focus();
    return;
  }
  $("config-save").disabled = true;
  try {
    await api("/update_config/", {method: "PUT", params: {site_id: state.siteId}, body: readConfigForm()});
    closeConfig();
    notify("Configuration saved.");
    await loadSites().catch(() => {});  // the timezone may have changed: every time on the page follows it
    document.dispatchEvent(new CustomEvent("zone-changed"));
    loadHistory();
  } catch (error) {
    if (error.status === 401) return;
    if (error.status === 422) {
      const general = showErrors(problemsOf(error));
      $("config-message").textContent = general.length ? `Not saved: ${general.join("; ")}`
        : "Nothing was saved: fix the fields marked in red.";
    } else $("config-message").textContent = `Not saved: ${error.message}`;
  } finally {
    $("config-save").disabled = false;
  }
}

export function closeConfig() {
  clearTimeout(previewTimer);
  previewSeq++;  // an answer still on its way is dropped
  closeTargetForm();  // no application password stays in a field
  showModal("config-modal", false);
}

/** The form's behaviour, wired once. */
export function wireConfig() {
  $("cfg-skip_review").addEventListener("change", showSkipReviewWarning);
  $("cfg-frequency").addEventListener("change", () => { showFrequency(); previewSoon(); });
  $("cfg-time-add").addEventListener("click", () => { addTime(); });
  $("cfg-is_enabled").addEventListener("change", previewSoon);
  const schedule = document.querySelector("#config-form fieldset.schedule");
  schedule.addEventListener("input", (e) => { if (e.target.matches("input")) previewSoon(); });
  schedule.addEventListener("change", (e) => { if (e.target.matches("input[type=checkbox]")) previewSoon(); });
}

/** One batch-size field per batch stage of the catalogue, the weekday and day-of-month choices, and the timezone
    suggestions. */
export function buildConfigForm() {
  $("batch-fields").replaceChildren(...batchStages().map((stage) => el("div", {className: "field"},
    el("label", {for: `cfg-${batchField(stage)}`}, `Stage ${stage.number} · ${stageName(stage.number)} `,
      el("span", {className: "muted"}, `(${BATCH_RANGE})`)),
    el("input", {id: `cfg-${batchField(stage)}`, name: batchField(stage), type: "number", step: "1", min: "1",
      max: "1000", inputmode: "numeric"}),
    el("span", {className: "field-error", dataset: {errorFor: batchField(stage)}}))));
  $("cfg-weekdays").replaceChildren(...WEEKDAYS.map(([value, label]) => el("label", {className: "choice"},
    el("input", {type: "checkbox", value, name: "weekdays", dataset: {field: "weekdays"}}), ` ${label}`)));
  $("cfg-month_days").replaceChildren(...Array.from({length: 31}, (_, i) => el("label", {className: "day-choice"},
    el("input", {type: "checkbox", value: String(i + 1), name: "month_days", dataset: {field: "month_days"},
      "aria-label": `Day ${i + 1}`}), el("span", {}, String(i + 1)))));
  let zones = [];
  try { zones = Intl.supportedValuesOf("timeZone"); } catch (_) { zones = ["UTC"]; }
  $("timezones").replaceChildren(...zones.map((z) => el("option", {value: z})));
}
