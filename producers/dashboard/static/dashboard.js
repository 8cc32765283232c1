/* Automation dashboard, the entry module: sign-in with the API key, site selection and the page's wiring.
   Vanilla ES modules over /api/v1/automation/; stage names and numbers come from its stage catalogue. */

import {loadCredits, loadSites, rememberSite} from "./account.js";
import {api, apiKey, forgetKey, onUnauthorized, storeKey} from "./api.js";
import {loadCatalogue} from "./catalogue.js";
import {buildConfigForm, openConfig, saveConfig} from "./config.js";
import {buildRunLogStages, loadHistory, loadRunLog} from "./history.js";
import {loadReview, revokeBlobs} from "./review.js";
import {control, pollLog, pollRun, pollSlow, renderStages, runNowClicked, startRun, stopPolling, updateButtons} from "./runs.js";
import {$, notify, showModal, state} from "./ui.js";

const MODALS = ["estimate-modal", "config-modal", "run-modal", "article-modal"];

// ---------- API key ----------
function askForKey(message = "") {
  stopPolling();
  $("app").hidden = true;
  $("key-screen").hidden = false;
  $("key-error").textContent = message;
  $("key-input").value = "";
  $("key-input").focus();
}

function signOut(message = "") {
  forgetKey();
  askForKey(message);
}

async function submitKey(event) {
  event.preventDefault();
  const key = $("key-input").value.trim();
  if (!key) return;
  try {
    await api("/credits/", {key});
  } catch (error) {
    $("key-error").textContent = error.status === 401 ? "That API key was not accepted." : `Could not check the key: ${error.message}`;
    return;
  }
  storeKey(key);
  await start();
}

// ---------- sites ----------
async function selectSite(siteId) {
  stopPolling();
  state.siteId = siteId;
  state.active = null;
  state.shown = null;
  rememberSite(siteId);
  renderStages(null);
  updateButtons();
  await pollRun();
  pollLog();
  loadHistory();
  loadReview();
}

async function start() {
  $("key-screen").hidden = true;
  $("app").hidden = false;
  try {
    await loadCatalogue();  // once per page: the stage cards, forms and labels are built from it
    buildConfigForm();
    buildRunLogStages();
    renderStages(null);
    await loadSites();
    await loadCredits();
  } catch (error) {
    if (error.status !== 401) notify(`Could not load the account: ${error.message}`, "error");
    return;
  }
  pollSlow();
  if (state.siteId !== null) await selectSite(state.siteId);
  else updateButtons();
}

// ---------- wiring ----------
function init() {
  onUnauthorized(signOut);
  $("key-form").addEventListener("submit", submitKey);
  $("forget-key").addEventListener("click", () => signOut());
  $("site-select").addEventListener("change", (e) => selectSite(Number(e.target.value)));
  $("run-now").addEventListener("click", runNowClicked);
  $("estimate-start").addEventListener("click", startRun);
  $("estimate-cancel").addEventListener("click", () => showModal("estimate-modal", false));
  $("pause").addEventListener("click", () => control("pause"));
  $("resume").addEventListener("click", () => control("resume"));
  $("configure").addEventListener("click", openConfig);
  $("config-form").addEventListener("submit", saveConfig);
  $("config-cancel").addEventListener("click", () => showModal("config-modal", false));
  $("log-lines").addEventListener("change", pollLog);
  for (const id of ["filter-status", "filter-trigger", "filter-from", "filter-to"]) $(id).addEventListener("change", loadHistory);
  $("history-filters").addEventListener("submit", (e) => { e.preventDefault(); loadHistory(); });
  $("run-close").addEventListener("click", () => showModal("run-modal", false));
  $("run-log-stage").addEventListener("change", loadRunLog);
  $("article-close").addEventListener("click", () => { showModal("article-modal", false); revokeBlobs(); });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    for (const id of MODALS) showModal(id, false);
    revokeBlobs();
  });
  if (apiKey()) start(); else askForKey();
}

// a module runs after the document is parsed; the check keeps init right if it is ever loaded later
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
