/* The site's content: status tabs with counts, search, paging, row selection and bulk actions
   (approve, reject with a reason, publish, export). One article opens in the article modal (article.js). */

import {api} from "./api.js";
import {openArticle} from "./article.js";
import {exportArticles} from "./exports.js";
import {$, badge, el, fmtDate, fmtNum, state} from "./ui.js";

const TABS = [["review", "Review"], ["approved", "Approved"], ["rejected", "Rejected"], ["published", "Published"],
  ["publish_failed", "Publish failed"], ["all", "All"]];
const PAGE_SIZE = 20;
const SEARCH_DELAY_MS = 300;
const ERRORS_SHOWN = 3;
const WATCH_MS = 3000;        // after a publish, the list follows the posts landing ...
const WATCH_FOR_MS = 120000;  // ... for two minutes at most, or until nothing is left approved

const view = {status: "review", q: "", offset: 0, total: 0, items: [], selected: new Set(), loading: 0};

/** Back to the first tab, page and no selection (another site was chosen). */
export function resetReview() {
  watchUntil = 0;
  clearTimeout(state.timers.review);
  Object.assign(view, {status: "review", q: "", offset: 0, total: 0, items: []});
  view.selected.clear();
  $("review-q").value = "";
  $("bulk-result").hidden = true;
  showRejectForm(false);
}

export async function loadReview() {
  if (state.siteId === null) return;
  const siteId = state.siteId;
  const request = ++view.loading;  // a slower, older answer never overwrites a newer one
  try {
    const {data} = await api("/review/", {params: {site_id: siteId, status: view.status, q: view.q, limit: PAGE_SIZE,
      offset: view.offset}});
    if (request !== view.loading || siteId !== state.siteId) return;
    if (data.total && view.offset >= data.total) {  // the page emptied (its articles moved on): the last page
      view.offset = Math.max(0, Math.floor((data.total - 1) / PAGE_SIZE) * PAGE_SIZE);
      return loadReview();
    }
    view.total = data.total;
    view.items = data.items;
    renderTabs(data.counts);
    renderRows();
    watchNext(data.counts);
  } catch (error) {
    if (error.status !== 401 && request === view.loading) {
      $("review-list").replaceChildren(el("tr", {}, el("td", {colSpan: 6, className: "error"}, `Could not load: ${error.message}`)));
    }
  }
}

let watchUntil = 0;

/** Follow publishing for a while: reload the list while something is still approved (its posts are on the way). */
function watchPublishing() {
  watchUntil = Date.now() + WATCH_FOR_MS;
}

function watchNext(counts) {
  clearTimeout(state.timers.review);
  if (Date.now() < watchUntil && (counts.approved || 0) > 0) state.timers.review = setTimeout(loadReview, WATCH_MS);
}

function renderTabs(counts) {
  const all = Object.values(counts).reduce((a, b) => a + b, 0);
  $("review-tabs").replaceChildren(...TABS.map(([status, label]) => {
    const count = status === "all" ? all : (counts[status] || 0);
    const selected = status === view.status;
    return el("button", {type: "button", role: "tab", className: `tab${selected ? " selected" : ""}`,
      "aria-selected": selected ? "true" : "false", dataset: {status}, onclick: () => chooseTab(status)},
    label, " ", el("span", {className: "tab-count"}, fmtNum(count)));
  }));
  $("review-total").textContent = `${fmtNum(counts.review || 0)} waiting for review`;
}

function renderRows() {
  const rows = view.items.map((item) => el("tr", {dataset: {contentId: item.id, status: item.status},
    className: view.selected.has(item.id) ? "selected" : null},
  el("td", {className: "check"}, el("input", {type: "checkbox", className: "row-check", "aria-label": `Select “${item.title}”`,
    checked: view.selected.has(item.id), onchange: (e) => select(item.id, e.target.checked)})),
  el("td", {},
    el("button", {type: "button", className: "link review-item", dataset: {contentId: item.id},
      onclick: () => openArticle(item.id)}, item.title),
    item.primary_keyword ? el("div", {className: "muted review-keyword"}, `targets “${item.primary_keyword}”`) : ""),
  el("td", {}, badge(item.status)),
  el("td", {className: "num"}, fmtNum(item.word_count)),
  el("td", {className: "num"}, fmtNum(item.images)),
  el("td", {}, fmtDate(item.created_at))));
  $("review-list").replaceChildren(...rows);
  $("review-empty").hidden = rows.length > 0;
  $("review-empty").textContent = view.q ? `Nothing matches “${view.q}” here.` : "Nothing here.";
  const first = view.total ? view.offset + 1 : 0;
  const last = view.offset + view.items.length;
  $("review-range").textContent = `${fmtNum(first)}–${fmtNum(last)} of ${fmtNum(view.total)}`;
  $("review-prev").disabled = view.offset === 0;
  $("review-next").disabled = last >= view.total;
  renderSelection();
}

function renderSelection() {
  const onPage = view.items.map((i) => i.id);
  const picked = onPage.filter((id) => view.selected.has(id)).length;
  const all = $("review-select-page");
  all.checked = onPage.length > 0 && picked === onPage.length;
  all.indeterminate = picked > 0 && picked < onPage.length;
  all.disabled = onPage.length === 0;
  const n = view.selected.size;
  $("selection-count").textContent = `${fmtNum(n)} selected${n > picked ? ` (${fmtNum(n - picked)} on other pages)` : ""}`;
  $("selection-clear").hidden = n === 0;
  for (const id of ["bulk-approve", "bulk-reject", "bulk-publish", "bulk-export"]) $(id).disabled = n === 0;
  for (const row of $("review-list").rows) row.classList.toggle("selected", view.selected.has(Number(row.dataset.contentId)));
}

function select(id, on) {
  if (on) view.selected.add(id); else view.selected.delete(id);
  renderSelection();
}

function selectPage(on) {
  for (const item of view.items) if (on) view.selected.add(item.id); else view.selected.delete(item.id);
  for (const box of $("review-list").querySelectorAll(".row-check")) box.checked = on;
  renderSelection();
}

function clearSelection() {
  view.selected.clear();
  for (const box of $("review-list").querySelectorAll(".row-check")) box.checked = false;
  renderSelection();
}

function chooseTab(status) {
  if (status === view.status) return;
  view.status = status;
  view.offset = 0;
  view.selected.clear();  // what was picked is no longer in view
  loadReview();
}

let searchTimer = null;
function searchSoon() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(search, SEARCH_DELAY_MS);
}

function search(event) {
  if (event) event.preventDefault();
  clearTimeout(searchTimer);
  const q = $("review-q").value.trim();
  if (q === view.q) return;
  view.q = q;
  view.offset = 0;
  view.selected.clear();
  loadReview();
}

function page(step) {
  view.offset = Math.max(0, view.offset + step * PAGE_SIZE);
  loadReview();
}

// ---------- bulk actions ----------
function showRejectForm(show) {
  $("bulk-reject-form").hidden = !show;
  if (show) { $("bulk-reject-reason").value = ""; $("bulk-reject-reason").focus(); }
}

function showResult(text, kind, details = []) {
  const box = $("bulk-result");
  box.className = `result ${kind}`;
  box.replaceChildren(el("span", {className: "result-summary"}, text),
    details.length ? el("ul", {className: "result-errors"}, details.map((d) => el("li", {}, d))) : "");
  box.hidden = false;
}

const VERBS = {approve: "Approve", reject: "Reject", publish: "Publish"};

async function bulk(action, reason = null) {
  const ids = [...view.selected];
  if (!ids.length) return;
  const buttons = ["bulk-approve", "bulk-reject", "bulk-publish", "bulk-export"].map($);
  for (const b of buttons) b.disabled = true;
  showResult(`${VERBS[action]}: working on ${fmtNum(ids.length)}…`, "info");
  try {
    const {data} = await api("/content/bulk", {method: "POST", body: {ids, action, reason: reason || undefined}});
    const failed = data.results.filter((r) => r.error);
    const details = failed.slice(0, ERRORS_SHOWN).map((r) => `#${r.id}: ${r.error}`);
    if (failed.length > ERRORS_SHOWN) details.push(`… and ${fmtNum(failed.length - ERRORS_SHOWN)} more`);
    const more = action === "publish" && data.changed ? " Posts are being sent; the Published tab shows them as they land." : "";
    showResult(`${VERBS[action]}: ${fmtNum(data.changed)} changed, ${fmtNum(data.unchanged)} unchanged, `
      + `${fmtNum(data.failed)} failed.${more}`, data.failed ? "error" : "ok", details);
    view.selected = new Set(failed.map((r) => r.id));  // what failed stays picked, to retry or inspect
    if (action === "publish" && data.changed) watchPublishing();
    if (action === "reject") showRejectForm(false);
  } catch (error) {
    if (error.status !== 401) showResult(`${VERBS[action]} failed: ${error.message}`, "error");
  } finally {
    await loadReview();
    renderSelection();
  }
}

function rejectSubmitted(event) {
  event.preventDefault();
  const reason = $("bulk-reject-reason").value.trim();
  if (!reason) { showResult("A rejection needs a reason: say what is wrong.", "error"); $("bulk-reject-reason").focus(); return; }
  bulk("reject", reason);
}

async function exportSelected() {
  const ids = [...view.selected];
  if (!ids.length) return;
  const format = $("export-format").value;
  $("bulk-export").disabled = true;
  showResult(`Export: preparing ${fmtNum(ids.length)} article(s)…`, "info");
  try {
    const name = await exportArticles({ids: ids.join(","), format});
    showResult(`Export: ${name} downloaded (${fmtNum(ids.length)} article(s), ${format}).`, "ok");
  } catch (error) {
    if (error.status !== 401) showResult(`Export failed: ${error.message}`, "error");
  } finally {
    renderSelection();
  }
}

/** The list's controls, wired once. */
export function wireReview() {
  $("review-search").addEventListener("submit", search);
  $("review-q").addEventListener("input", searchSoon);
  $("review-prev").addEventListener("click", () => page(-1));
  $("review-next").addEventListener("click", () => page(1));
  $("review-select-page").addEventListener("change", (e) => selectPage(e.target.checked));
  $("selection-clear").addEventListener("click", clearSelection);
  $("bulk-approve").addEventListener("click", () => bulk("approve"));
  $("bulk-reject").addEventListener("click", () => showRejectForm($("bulk-reject-form").hidden));
  $("bulk-reject-form").addEventListener("submit", rejectSubmitted);
  $("bulk-reject-cancel").addEventListener("click", () => showRejectForm(false));
  $("bulk-publish").addEventListener("click", () => bulk("publish"));
  $("bulk-export").addEventListener("click", exportSelected);
  document.addEventListener("content-changed", () => loadReview());  // an action in the article modal
  renderTabs({});
  renderSelection();
}
