/* The configuration modal: schedule and the batch size of every batch stage, with the API's errors beside each field. */

import {loadSites} from "./account.js";
import {api} from "./api.js";
import {batchStages, stageName} from "./catalogue.js";
import {$, el, fmtDate, notify, showModal, state} from "./ui.js";

const SCHEDULE_FIELDS = ["is_enabled", "frequency", "scheduled_time", "timezone"];
const batchField = (stage) => `stage_${stage.number}_batch_size`;
const configFields = () => [...SCHEDULE_FIELDS, ...batchStages().map(batchField)];

function clearFieldErrors() {
  for (const span of document.querySelectorAll("#config-form .field-error")) span.textContent = "";
  for (const input of document.querySelectorAll("#config-form [aria-invalid]")) input.removeAttribute("aria-invalid");
  $("config-message").textContent = "";
}

export async function openConfig() {
  clearFieldErrors();
  showModal("config-modal", true);
  try {
    const {data: cfg} = await api("/config/", {params: {site_id: state.siteId}});
    $("cfg-is_enabled").checked = cfg.is_enabled;
    $("cfg-frequency").value = cfg.frequency;
    $("cfg-scheduled_time").value = cfg.scheduled_time;
    $("cfg-timezone").value = cfg.timezone;
    for (const field of batchStages().map(batchField)) $(`cfg-${field}`).value = cfg[field];
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
  $("config-save").disabled = true;
  try {
    await api("/update_config/", {method: "PUT", params: {site_id: state.siteId}, body: readConfigForm()});
    showModal("config-modal", false);
    notify("Configuration saved.");
    loadSites().catch(() => {});
  } catch (error) {
    if (error.status === 422 && error.body) showConfigErrors(error.body.detail);
    else if (error.status !== 401) $("config-message").textContent = `Not saved: ${error.message}`;
  } finally {
    $("config-save").disabled = false;
  }
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
