/* The configuration modal: schedule and the batch size of every batch stage, with the API's errors beside each field. */

import {loadSites} from "./account.js";
import {api} from "./api.js";
import {batchStages, stageName} from "./catalogue.js";
import {closeTargetForm, loadTargets} from "./publishing.js";
import {$, el, fmtDate, notify, showModal, state} from "./ui.js";

const SCHEDULE_FIELDS = ["is_enabled", "frequency", "scheduled_time", "timezone", "auto_publish", "skip_review"];
const batchField = (stage) => `stage_${stage.number}_batch_size`;
const configFields = () => [...SCHEDULE_FIELDS, ...batchStages().map(batchField)];

function clearFieldErrors() {
  for (const span of document.querySelectorAll("#config-form .field-error")) span.textContent = "";
  for (const input of document.querySelectorAll("#config-form [aria-invalid]")) input.removeAttribute("aria-invalid");
  $("config-message").textContent = "";
}

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
  clearFieldErrors();
  showModal("config-modal", true);
  loadTargets();
  try {
    const {data: cfg} = await api("/config/", {params: {site_id: state.siteId}});
    $("cfg-is_enabled").checked = cfg.is_enabled;
    $("cfg-frequency").value = cfg.frequency;
    $("cfg-scheduled_time").value = cfg.scheduled_time;
    $("cfg-timezone").value = cfg.timezone;
    for (const field of batchStages().map(batchField)) $(`cfg-${field}`).value = cfg[field];
    $("cfg-auto_publish").checked = cfg.auto_publish;
    $("cfg-skip_review").checked = cfg.skip_review;
    skipReviewWas = cfg.skip_review;
    $("cfg-skip_review_confirm").checked = false;
    showSkipReviewWarning();
    $("cfg-next").textContent = fmtDate(cfg.next_run_at);
    $("cfg-last").textContent = fmtDate(cfg.last_run_at);
  } catch (error) {
    $("config-message").textContent = `Could not load the configuration: ${error.message}`;
  }
}

function readConfigForm() {
  const body = {
    is_enabled: $("cfg-is_enabled").checked,
    frequency: $("cfg-frequency").value,
    scheduled_time: $("cfg-scheduled_time").value.trim(),
    timezone: $("cfg-timezone").value.trim(),
    auto_publish: $("cfg-auto_publish").checked,
    skip_review: $("cfg-skip_review").checked,  // always explicit
  };
  for (const field of batchStages().map(batchField)) {
    const raw = $(`cfg-${field}`).value.trim();
    const num = Number(raw);
    body[field] = raw !== "" && Number.isFinite(num) ? num : raw;  // the API explains what's wrong
  }
  return body;
}

function showConfigErrors(detail) {
  const fields = configFields();
  const general = [];
  for (const error of Array.isArray(detail) ? detail : [{loc: [], msg: String(detail)}]) {
    const loc = (error.loc || []).map(String);
    const field = loc.find((part) => fields.includes(part));
    const span = field && document.querySelector(`#config-form [data-error-for="${field}"]`);
    if (span) {
      span.textContent = span.textContent ? `${span.textContent}; ${error.msg}` : error.msg;
      const input = $(`cfg-${field}`);
      if (input) input.setAttribute("aria-invalid", "true");
    } else {
      const where = loc.filter((part) => part !== "body").join(".");
      general.push(where ? `${where}: ${error.msg}` : error.msg);
    }
  }
  $("config-message").textContent = general.length ? general.join(" · ") : "Nothing was saved: fix the fields marked in red.";
}

export async function saveConfig(event) {
  event.preventDefault();
  clearFieldErrors();
  if ($("cfg-skip_review").checked && !skipReviewWas && !$("cfg-skip_review_confirm").checked) {
    showConfigErrors([{loc: ["body", "skip_review"],
      msg: "Confirm that this site's content will be approved without human review, or leave it off."}]);
    $("cfg-skip_review_confirm").focus();
    return;
  }
  $("config-save").disabled = true;
  try {
    await api("/update_config/", {method: "PUT", params: {site_id: state.siteId}, body: readConfigForm()});
    closeConfig();
    notify("Configuration saved.");
    loadSites().catch(() => {});
  } catch (error) {
    if (error.status === 422 && error.body) showConfigErrors(error.body.detail);
    else if (error.status !== 401) $("config-message").textContent = `Not saved: ${error.message}`;
  } finally {
    $("config-save").disabled = false;
  }
}

export function closeConfig() {
  closeTargetForm();  // no application password stays in a field
  showModal("config-modal", false);
}

/** The publishing toggles' behaviour, wired once. */
export function wireConfig() {
  $("cfg-skip_review").addEventListener("change", showSkipReviewWarning);
}

/** One batch-size field per batch stage of the catalogue, and the timezone suggestions. */
export function buildConfigForm() {
  $("batch-fields").replaceChildren(...batchStages().map((stage) => el("div", {className: "field"},
    el("label", {for: `cfg-${batchField(stage)}`}, `Stage ${stage.number} · ${stageName(stage.number)}`),
    el("input", {id: `cfg-${batchField(stage)}`, name: batchField(stage), type: "number", step: "1"}),
    el("span", {className: "field-error", dataset: {errorFor: batchField(stage)}}))));
  let zones = [];
  try { zones = Intl.supportedValuesOf("timeZone"); } catch (_) { zones = ["UTC"]; }
  $("timezones").replaceChildren(...zones.map((z) => el("option", {value: z})));
}
