/* Automation dashboard, the entry module: sign-in with the API key, site selection and the page's wiring.
   Vanilla ES modules over /api/v1/automation/; stage names and numbers come from its stage catalogue. */

import {loadCredits, loadSites, rememberSite, showZone} from "./account.js";
import {api, apiKey, forgetKey, onUnauthorized, storeKey} from "./api.js";
import {loadCatalogue} from "./catalogue.js";
import {closeArticle, wireArticle} from "./article.js";
import {buildConfigForm, closeConfig, openConfig, saveConfig, wireConfig} from "./config.js";
import {exportRun} from "./exports.js";
import {loadCreditsPanel, wireCredits} from "./credits.js";
import {buildRunLogStages, loadHistory, wireRunModal} from "./history.js";
import {wirePublishing} from "./publishing.js";
import {loadReview, resetReview, wireReview} from "./review.js";
import {control, renderStages, runNowClicked, startPolling, startRun, stopPolling, updateButtons, wireLog} from "./runs.js";
import {$, notify, showModal, state} from "./ui.js";

/** Every modal, with what closes it (the article and configuration modals forget what they held). */
const MODALS = {"estimate-modal": () => showModal("estimate-modal", false), "config-modal": closeConfig,
  "run-modal": () => showModal("run-modal", false), "article-modal": closeArticle};

// ---------- API key ----------
function askForKey(message = "") {
  stopPolling();
  resetReview();
  for (const close of Object.values(MODALS)) close();
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
  showZone();
  resetReview();
  renderStages(null);
  updateButtons();
  $("history-body").replaceChildren();
  loadReview();
  loadCreditsPanel();
  await startPolling();  // the one loop: run, log, history and balance
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
  $("config-cancel").addEventListener("click", closeConfig);
  $("config-close").addEventListener("click", closeConfig);
  for (const id of ["filter-status", "filter-trigger", "filter-from", "filter-to"]) $(id).addEventListener("change", loadHistory);
  $("history-filters").addEventListener("submit", (e) => { e.preventDefault(); loadHistory(); });
  $("run-close").addEventListener("click", () => showModal("run-modal", false));
  $("run-export").addEventListener("click", (e) => exportRun(state.openRunId, $("run-export-format").value,
    e.currentTarget, $("run-export-message")));
  $("current-export").addEventListener("click", (e) => exportRun(state.shown && state.shown.run_id,
    $("current-export-format").value, e.currentTarget, $("current-export-message")));
  wireReview();
  wireArticle();
  wireConfig();
  wirePublishing();
  wireLog();
  wireRunModal();
  wireCredits();
  document.addEventListener("zone-changed", () => { showZone(); startPolling(); loadCreditsPanel(); });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    if (!$("article-edit-form").hidden && !$("article-modal").hidden) return;  // an edit is not thrown away by a key
    for (const [id, close] of Object.entries(MODALS)) if (!$(id).hidden) close();
  });
  if (apiKey()) start(); else askForKey();
}

// a module runs after the document is parsed; the check keeps init right if it is ever loaded later
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
