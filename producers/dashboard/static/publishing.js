/* The site's publish targets (WordPress), in the configuration modal: list, add, edit, delete, test the connection.
   The application password is write-only: the API never returns it, and the page never shows or keeps it (the field
   is emptied after every save and when the form closes; an edited target says "stored" and keeps it when left empty). */

import {api, problem} from "./api.js";
import {$, clearProblems, el, fmtNum, showProblems, state} from "./ui.js";

const FIELDS = ["name", "base_url", "username", "application_password", "post_status", "schedule_spacing_minutes", "enabled", "verify"];
const CONFIRM_MS = 5000;

let targets = [];
let editing = null;  // the target being edited, or null for a new one

const input = (field) => $(`tgt-${field}`);

function spacingLabel(minutes) {
  if (minutes % 1440 === 0) return `${fmtNum(minutes / 1440)} day(s)`;
  if (minutes % 60 === 0) return `${fmtNum(minutes / 60)} hour(s)`;
  return `${fmtNum(minutes)} minute(s)`;
}

function targetRow(t) {
  const check = el("span", {className: "target-check", role: "status"});
  const remove = el("button", {type: "button", className: "target-delete danger-link"}, "Delete");
  let armed = null;
  remove.addEventListener("click", async () => {
    if (!armed) {  // a second click within a few seconds deletes
      remove.textContent = "Click again to delete";
      armed = setTimeout(() => { armed = null; remove.textContent = "Delete"; }, CONFIRM_MS);
      return;
    }
    clearTimeout(armed);
    armed = null;
    await deleteTarget(t, remove, check);
  });
  return el("li", {className: "target", dataset: {targetId: t.id}},
    el("div", {className: "target-info"},
      el("strong", {className: "target-name"}, t.name), " ",
      el("span", {className: `badge ${t.enabled ? "completed" : "paused"}`}, t.enabled ? "enabled" : "disabled"),
      el("div", {className: "muted"}, el("span", {className: "target-url"}, t.base_url), ` · user ${t.username} · `,
        t.post_status === "future" ? `scheduled, one post every ${spacingLabel(t.schedule_spacing_minutes)}`
          : (t.post_status === "publish" ? "published at once" : "saved as drafts"),
        ` · application password: ${t.has_password ? "stored" : "missing"}`)),
    el("div", {className: "target-actions"},
      el("button", {type: "button", className: "target-test", onclick: (e) => testTarget(t, e.currentTarget, check)}, "Test connection"),
      el("button", {type: "button", className: "target-edit", onclick: () => openTargetForm(t)}, "Edit"),
      remove),
    check);
}

function renderTargets() {
  $("targets").replaceChildren(...targets.map(targetRow));
  $("targets-empty").hidden = targets.length > 0;
}

export async function loadTargets() {
  $("targets-message").textContent = "";
  closeTargetForm();
  if (state.siteId === null) return;
  try {
    targets = (await api("/publish_targets/", {params: {site_id: state.siteId}})).data.targets;
    renderTargets();
  } catch (error) {
    targets = [];
    renderTargets();
    if (error.status !== 401) $("targets-message").textContent = `Could not load the publish targets: ${error.message}`;
  }
}

async function testTarget(t, button, check) {
  button.disabled = true;
  check.className = "target-check muted";
  check.textContent = "Testing…";
  try {
    const {data} = await api(`/publish_targets/${t.id}/test`, {method: "POST"});
    check.className = `target-check ${data.ok ? "ok" : "error"}`;
    check.textContent = data.ok ? `✓ Connected${data.user ? ` as ${data.user}` : ""}.` : `✗ ${data.error || "the site refused the connection"}`;
  } catch (error) {
    check.className = "target-check error";
    check.textContent = `✗ Could not test: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

async function deleteTarget(t, button, check) {
  button.disabled = true;
  try {
    await api(`/publish_targets/${t.id}`, {method: "DELETE"});
    await loadTargets();
  } catch (error) {
    check.className = "target-check error";
    check.textContent = `Not deleted: ${error.message}`;
    button.disabled = false;
    button.textContent = "Delete";
  }
}

function showSpacing() {
  $("tgt-spacing-field").hidden = input("post_status").value !== "future";
}

function openTargetForm(target = null) {
  editing = target;
  const form = $("target-form");
  clearProblems(form);
  $("target-message").textContent = "";
  $("target-form-title").textContent = target ? `Edit “${target.name}”` : "New WordPress target";
  input("name").value = target ? target.name : (targets.some((t) => t.name === "wordpress") ? "" : "wordpress");
  input("base_url").value = target ? target.base_url : "";
  input("username").value = target ? target.username : "";
  input("application_password").value = "";
  input("application_password").required = !target;
  input("application_password").placeholder = target ? "leave empty to keep the stored one" : "xxxx xxxx xxxx xxxx xxxx xxxx";
  $("tgt-password-state").textContent = target && target.has_password ? "stored" : "";
  $("tgt-password-state").hidden = !(target && target.has_password);
  input("post_status").value = target ? target.post_status : "draft";
  input("schedule_spacing_minutes").value = target ? target.schedule_spacing_minutes : 1440;
  input("enabled").checked = target ? target.enabled : true;
  input("verify").checked = true;
  showSpacing();
  form.hidden = false;
  $("target-add").disabled = true;
  (target ? input("base_url") : input("name").value ? input("base_url") : input("name")).focus();
}

export function closeTargetForm() {
  input("application_password").value = "";  // never kept in the page
  $("target-form").hidden = true;
  $("target-add").disabled = false;
  editing = null;
}

function readTargetForm() {
  const spacing = input("schedule_spacing_minutes").value.trim();
  const body = {
    name: input("name").value.trim(),
    base_url: input("base_url").value.trim(),
    username: input("username").value.trim(),
    post_status: input("post_status").value,
    schedule_spacing_minutes: spacing !== "" && Number.isFinite(Number(spacing)) ? Number(spacing) : spacing,
    enabled: input("enabled").checked,
    verify: input("verify").checked,
  };
  const password = input("application_password").value;
  if (password || !editing) body.application_password = password;
  if (!editing) return {site_id: state.siteId, ...body};
  const changes = {verify: body.verify};  // only what changed: the API keeps the rest
  for (const field of FIELDS) {
    if (field === "verify" || !(field in body)) continue;
    if (field === "application_password" || body[field] !== editing[field]) changes[field] = body[field];
  }
  return changes;
}

function problemOf(item) {
  const found = problem(item);
  const field = FIELDS.find((f) => found.field === f || found.field.startsWith(`${f}.`));
  return field ? {field, msg: found.msg} : found;
}

async function saveTarget(event) {
  event.preventDefault();
  const form = $("target-form");
  clearProblems(form);
  $("target-message").textContent = "";
  const body = readTargetForm();
  $("target-save").disabled = true;
  $("target-message").className = "muted";
  $("target-message").textContent = body.verify ? "Checking the credentials with the site…" : "Saving…";
  try {
    if (editing) await api(`/publish_targets/${editing.id}`, {method: "PUT", body});
    else await api("/publish_targets/", {method: "POST", body});
    await loadTargets();  // closes the form, and empties the password field
    $("targets-message").className = "ok";
    $("targets-message").textContent = "Publish target saved.";
  } catch (error) {
    $("target-message").className = "error";
    const text = error.status === 401 ? "" : showProblems(form, error, problemOf);
    $("target-message").textContent = text && !text.startsWith("Not saved") ? `Not saved: ${text}` : text;
  } finally {
    $("target-save").disabled = false;
  }
}

/** The section's controls, wired once. */
export function wirePublishing() {
  $("target-add").addEventListener("click", () => openTargetForm(null));
  $("target-form").addEventListener("submit", saveTarget);
  $("target-cancel").addEventListener("click", closeTargetForm);
  input("post_status").addEventListener("change", showSpacing);
}
