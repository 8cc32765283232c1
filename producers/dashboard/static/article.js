/* One article in a modal: its preview with images, status and actions (approve, reject with a reason, edit,
   publish, publish update, recreate a deleted post), its publications on the site's targets and its history. */

import {API, api, problem} from "./api.js";
import {$, badge, clearProblems, el, fmtDate, fmtNum, showModal, showProblems, state} from "./ui.js";

const PUBLISHABLE = ["approved", "published", "publish_failed"];
const APPROVABLE = ["review", "rejected"];
const REJECTABLE = ["review", "approved", "publish_failed"];
const POLL_MS = 2000;  // while a publication is queued, its outcome is shown when it lands
const EDIT_FIELDS = ["title", "meta_title", "meta_description", "slug", "markdown"];
const LIMITS = {meta_title: 60, meta_description: 160};

let current = null;  // the article shown (the API's answer)
let shownId = null;  // the id asked for last: an answer for another one is dropped
let saidFor = null;  // the status a success message was about: it goes when the status moves on

// ---------- the article's html, sanitized ----------
const ALLOWED_TAGS = new Set(["H1", "H2", "H3", "H4", "H5", "H6", "P", "UL", "OL", "LI", "STRONG", "EM", "B", "I", "U",
  "BLOCKQUOTE", "CODE", "PRE", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD", "BR", "HR", "A", "SPAN", "DIV", "SECTION", "FIGURE", "FIGCAPTION"]);

// The article's html is generated (or edited) text: keep only harmless tags, no attributes but safe links.
function sanitize(html) {
  const doc = new DOMParser().parseFromString(html, "text/html");
  const clean = (node) => {
    for (const child of [...node.childNodes]) {
      if (child.nodeType === Node.TEXT_NODE) continue;
      if (child.nodeType !== Node.ELEMENT_NODE || !ALLOWED_TAGS.has(child.tagName)) {
        if (child.nodeType === Node.ELEMENT_NODE && !["SCRIPT", "STYLE", "IFRAME", "OBJECT", "EMBED", "TEMPLATE"].includes(child.tagName)) {
          clean(child);
          child.replaceWith(...child.childNodes);
        } else child.remove();
        continue;
      }
      for (const attr of [...child.attributes]) {
        const keep = child.tagName === "A" && attr.name === "href" && /^(https?:|#|\/)/i.test(attr.value.trim());
        if (!keep) child.removeAttribute(attr.name);
      }
      if (child.tagName === "A") { child.setAttribute("rel", "noopener noreferrer nofollow"); child.setAttribute("target", "_blank"); }
      clean(child);
    }
  };
  clean(doc.body);
  return [...doc.body.childNodes];
}

export function revokeBlobs() {
  for (const url of state.blobUrls) URL.revokeObjectURL(url);
  state.blobUrls = [];
}

async function imageFigure(image) {
  const figure = el("figure", {className: `article-image ${image.kind}`, dataset: {imageId: image.id, kind: image.kind}});
  const caption = el("figcaption", {}, `${image.kind === "featured" ? "Featured" : `Image ${image.position}`}: ${image.prompt}`);
  if (!image.url) {
    figure.append(el("div", {className: "image-missing"}, `image ${image.status}`), caption);
    return figure;
  }
  try {
    const response = await api(image.url.replace(API, ""), {raw: true});
    const url = URL.createObjectURL(await response.blob());
    state.blobUrls.push(url);
    const img = el("img", {src: url, alt: image.prompt, width: image.width, height: image.height});
    figure.append(img, caption);
  } catch (error) {
    figure.append(el("div", {className: "image-missing"}, `could not load the image (${error.message})`), caption);
  }
  return figure;
}

async function renderBody(c) {
  const figures = await Promise.all(c.images.map(imageFigure));
  const body = el("div", {className: "article-html"}, sanitize(c.html));
  const featured = figures.filter((f) => f.dataset.kind === "featured");
  const inArticle = [];
  c.images.forEach((image, i) => {
    if (image.kind === "featured") return;
    // put an in-article image after the heading of its section when the html has one
    const heading = image.section && [...body.querySelectorAll("h2, h3")].find((h) => h.textContent.trim() === image.section.trim());
    if (heading) heading.after(figures[i]); else inArticle.push(figures[i]);
  });
  return [...featured, body, inArticle.length ? el("div", {className: "article-gallery"}, inArticle) : ""];
}

// ---------- status, actions, publications, history ----------
const deletedPost = (p) => Boolean(p.error) && /deleted|is gone|recreate/i.test(p.error);
const safeUrl = (url) => (url && /^https?:\/\//i.test(url) ? url : null);

function renderHeader(c) {
  $("article-title").textContent = c.title;
  $("article-status").replaceChildren(badge(c.status));
  const rejection = $("article-rejection");
  rejection.hidden = !c.rejection_reason;
  rejection.replaceChildren(el("strong", {}, "Rejected: "), el("span", {id: "article-rejection-reason"}, c.rejection_reason || ""),
    c.reviewed_by ? el("span", {className: "muted"}, ` — ${c.reviewed_by}`) : "");
  $("article-meta").replaceChildren(
    c.primary_keyword ? el("span", {className: "article-keyword"}, `targets “${c.primary_keyword}” · `) : "",
    `${fmtNum(c.word_count)} words · /${c.slug} · revision ${c.revision}`,
    c.reviewed_by && !c.rejection_reason ? ` · reviewed by ${c.reviewed_by}` : "",
    el("br"), el("span", {className: "article-seo"}, `meta: ${c.meta_title} — ${c.meta_description}`));

  const pubs = c.publications;
  const stale = pubs.some((p) => !p.up_to_date);
  $("article-approve").disabled = !APPROVABLE.includes(c.status);
  $("article-reject").disabled = !REJECTABLE.includes(c.status);
  const publish = $("article-publish");
  publish.disabled = !PUBLISHABLE.includes(c.status);
  publish.title = publish.disabled ? "Approve it before publishing" : "";
  if (c.status === "published" && stale) publish.textContent = "Publish update";
  else if (c.status === "published") publish.textContent = "Publish again";
  else publish.textContent = c.status === "publish_failed" ? "Publish (retry)" : "Publish";
  const deleted = pubs.some(deletedPost);  // publishing again fails the same way: recreating is the way on
  publish.classList.toggle("primary", !publish.disabled && !deleted && publish.textContent !== "Publish again");
  $("article-recreate").hidden = !deleted;
  $("article-recreate").classList.toggle("primary", deleted);
}

function renderPublications(c) {
  const rows = [];
  for (const p of c.publications) {
    const url = safeUrl(p.url);
    rows.push(el("tr", {className: "publication", dataset: {target: p.target, status: p.status}},
      el("td", {}, p.target),
      el("td", {}, badge(p.status), p.status === "published" && !p.up_to_date
        ? el("span", {className: "stale", title: "The post does not show the latest revision yet"}, " out of date") : ""),
      el("td", {}, url ? el("a", {href: url, target: "_blank", rel: "noopener noreferrer", className: "post-link"}, url) : "–"),
      el("td", {className: "num"}, fmtNum(p.attempts)),
      el("td", {}, p.scheduled_for ? fmtDate(p.scheduled_for) : "–"),
      el("td", {}, fmtDate(p.published_at))));
    if (p.error) {
      rows.push(el("tr", {className: "publication-error-row"},
        el("td", {colspan: 6}, el("div", {className: "publication-error", role: "note"}, p.error))));
    }
  }
  $("article-publications").replaceChildren(...rows);
  $("article-publications-table").hidden = rows.length === 0;
  $("article-publications-empty").hidden = rows.length > 0;
}

const ACTIONS = {approve: "approved", reject: "rejected", edit: "edited", publish: "asked to publish",
  published: "published", publish_failed: "publish failed"};

function changeDetail(change) {
  const c = change.changes || {};
  if (change.action === "edit") {
    const fields = Object.keys(c).filter((k) => k !== "revision").map((k) => (k === "body" ? "body" : k.replace("_", " ")));
    return fields.length ? `: ${fields.join(", ")}${c.revision ? ` (revision ${c.revision[1]})` : ""}` : "";
  }
  if (change.action === "publish" && Array.isArray(c.targets)) return ` to ${c.targets.join(", ")} (revision ${c.revision})`;
  if (change.action === "published" && c.target) return ` on ${c.target}${c.remote_id ? ` as post ${c.remote_id}` : ""}`;
  return "";
}

function renderHistory(c) {
  const items = c.changes.map((change) => el("li", {className: "change", dataset: {action: change.action}},
    el("time", {datetime: change.at}, fmtDate(change.at)), " · ",
    el("span", {className: "change-actor"}, change.actor), " ",
    el("strong", {className: "change-action"}, ACTIONS[change.action] || change.action), changeDetail(change),
    change.reason ? el("div", {className: change.action === "publish_failed" ? "change-reason error" : "change-reason"},
      `Reason: ${change.reason}`) : ""));
  $("article-history").replaceChildren(...items);
  $("article-history-empty").hidden = items.length > 0;
}

function say(text, kind = "ok") {
  const box = $("article-message");
  box.textContent = text;
  box.className = `action-message ${kind}`;
}

// ---------- loading and polling ----------
function stopPolling() { clearTimeout(state.timers.article); state.timers.article = null; }

async function refresh(contentId, {withBody = false} = {}) {
  stopPolling();
  const {data: c} = await api(`/content/${encodeURIComponent(contentId)}`);
  if (contentId !== shownId || $("article-modal").hidden) return;
  const body = withBody ? await renderBody(c) : null;
  if (contentId !== shownId) return;
  const moved = current && current.id === c.id && current.status !== c.status;
  current = c;
  renderHeader(c);
  renderPublications(c);
  renderHistory(c);
  if (body) $("article-body").replaceChildren(...body);
  if (moved) {  // e.g. published (or failed) meanwhile: the list too, and "sent to publishing" is over
    if ($("article-message").classList.contains("ok") && c.status !== saidFor) say("", "");
    document.dispatchEvent(new CustomEvent("content-changed"));
  }
  if (c.publications.some((p) => p.status === "queued")) {
    state.timers.article = setTimeout(() => refresh(contentId).catch(() => {}), POLL_MS);
  }
}

export async function openArticle(contentId) {
  revokeBlobs();
  stopPolling();
  shownId = contentId;
  current = null;
  $("article-title").textContent = "Loading…";
  for (const id of ["article-status", "article-meta", "article-body", "article-publications", "article-history"]) $(id).replaceChildren();
  $("article-rejection").hidden = true;
  say("", "");
  showEdit(false);
  showReject(false);
  for (const id of ["article-approve", "article-reject", "article-edit", "article-publish"]) $(id).disabled = true;
  $("article-recreate").hidden = true;
  showModal("article-modal", true);
  try {
    await refresh(contentId, {withBody: true});
    $("article-edit").disabled = false;
  } catch (error) {
    $("article-title").textContent = "Article";
    $("article-body").replaceChildren(el("p", {className: "error"}, `Could not load the article: ${error.message}`));
  }
}

export function closeArticle() {
  stopPolling();
  shownId = null;
  current = null;
  showModal("article-modal", false);
  revokeBlobs();
}

// ---------- actions ----------
const DONE = {approve: "Approved.", reject: "Rejected.", publish: "Sent to publishing: the post appears below when it lands.",
  recreate: "A new post is being created."};

async function act(action, button, body = undefined) {
  if (!current) return;
  const id = current.id;
  say("", "");
  button.disabled = true;
  try {
    const path = action === "recreate" ? "publish" : action;
    const payload = action === "recreate" ? {recreate: true} : body;
    const {data} = await api(`/content/${encodeURIComponent(id)}/${path}`, {method: "POST", body: payload});
    if (action === "reject") showReject(false);
    say(DONE[action]);
    saidFor = data.status;
    document.dispatchEvent(new CustomEvent("content-changed"));
  } catch (error) {
    if (error.status !== 401) say(`Could not ${action === "recreate" ? "recreate the post" : action}: ${error.message}`, "error");
  } finally {
    button.disabled = false;  // the header's buttons are set again from the article's status
    await refresh(id).catch(() => {});
  }
}

function showReject(show) {
  $("article-reject-form").hidden = !show;
  if (show) { $("article-reject-reason").value = ""; $("article-reject-reason").focus(); }
}

function rejectSubmitted(event) {
  event.preventDefault();
  const reason = $("article-reject-reason").value.trim();
  if (!reason) { say("A rejection needs a reason: say what is wrong.", "error"); $("article-reject-reason").focus(); return; }
  act("reject", $("article-reject-confirm"), {reason});
}

// ---------- edit ----------
function updateCounter(field) {
  const input = $(`edit-${field}`);
  const counter = $(`edit-${field}-count`);
  const length = [...input.value].length;
  counter.textContent = `${length}/${LIMITS[field]}`;
  counter.classList.toggle("over", length > LIMITS[field]);
}

function showEdit(show) {
  const form = $("article-edit-form");
  form.hidden = !show;
  $("article-body").hidden = show;
  $("article-edit").disabled = show || !current;
  clearProblems(form);
  $("edit-message").textContent = "";
  if (!show || !current) return;
  for (const field of EDIT_FIELDS) $(`edit-${field}`).value = current[field] || "";
  for (const field of Object.keys(LIMITS)) updateCounter(field);
  $("edit-title").focus();
}

async function saveEdit(event) {
  event.preventDefault();
  if (!current) return;
  const form = $("article-edit-form");
  clearProblems(form);
  $("edit-message").textContent = "";
  const body = {};
  for (const field of EDIT_FIELDS) {
    const value = field === "markdown" ? $(`edit-${field}`).value : $(`edit-${field}`).value.trim();
    if (value !== (current[field] || "")) body[field] = value;
  }
  if (!Object.keys(body).length) { $("edit-message").textContent = "Nothing changed."; return; }
  const id = current.id;
  $("edit-save").disabled = true;
  try {
    const {data} = await api(`/content/${encodeURIComponent(id)}`, {method: "PATCH", body});
    showEdit(false);
    say(data.changed ? "Saved." : "Nothing changed.");
    saidFor = data.status;
    document.dispatchEvent(new CustomEvent("content-changed"));
    revokeBlobs();
    await refresh(id, {withBody: true});
  } catch (error) {
    if (error.status !== 401) $("edit-message").textContent = showProblems(form, error, problem);
  } finally {
    $("edit-save").disabled = false;
  }
}

/** The modal's controls, wired once. */
export function wireArticle() {
  $("article-close").addEventListener("click", closeArticle);
  $("article-approve").addEventListener("click", (e) => act("approve", e.currentTarget));
  $("article-reject").addEventListener("click", () => showReject($("article-reject-form").hidden));
  $("article-reject-form").addEventListener("submit", rejectSubmitted);
  $("article-reject-cancel").addEventListener("click", () => showReject(false));
  $("article-edit").addEventListener("click", () => showEdit(true));
  $("article-edit-form").addEventListener("submit", saveEdit);
  $("edit-cancel").addEventListener("click", () => showEdit(false));
  $("article-publish").addEventListener("click", (e) => act("publish", e.currentTarget));
  $("article-recreate").addEventListener("click", (e) => act("recreate", e.currentTarget));
  for (const field of Object.keys(LIMITS)) $(`edit-${field}`).addEventListener("input", () => updateCounter(field));
}
