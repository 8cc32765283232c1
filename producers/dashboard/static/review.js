/* Content waiting for review, and an article's preview with its images. */

import {API, api} from "./api.js";
import {$, el, fmtNum, showModal, state} from "./ui.js";

export async function loadReview() {
  if (state.siteId === null) return;
  try {
    const {data} = await api("/review/", {params: {site_id: state.siteId}});
    $("review-total").textContent = `${fmtNum(data.total)} waiting`;
    const items = data.items.map((item) => el("li", {},
      el("button", {type: "button", className: "link review-item", dataset: {contentId: item.id}, onclick: () => openArticle(item.id)},
        item.title),
      el("span", {className: "muted review-keyword"}, item.primary_keyword ? ` · targets “${item.primary_keyword}”` : ""),
      el("span", {className: "muted"}, ` · ${fmtNum(item.word_count)} words · ${item.images} images`)));
    $("review-list").replaceChildren(...(items.length ? items : [el("li", {className: "muted"}, "Nothing waiting for review.")]));
  } catch (error) {
    if (error.status !== 401) $("review-list").replaceChildren(el("li", {className: "error"}, `Could not load: ${error.message}`));
  }
}

const ALLOWED_TAGS = new Set(["H1", "H2", "H3", "H4", "H5", "H6", "P", "UL", "OL", "LI", "STRONG", "EM", "B", "I", "U",
  "BLOCKQUOTE", "CODE", "PRE", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD", "BR", "HR", "A", "SPAN", "DIV", "SECTION", "FIGURE", "FIGCAPTION"]);

// The article's html is generated text: keep only harmless tags, no attributes but safe links.
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

async function openArticle(contentId) {
  revokeBlobs();
  $("article-title").textContent = "Loading…";
  $("article-meta").textContent = "";
  $("article-body").replaceChildren();
  showModal("article-modal", true);
  try {
    const {data: c} = await api(`/content/${encodeURIComponent(contentId)}`);
    $("article-title").textContent = c.title;
    $("article-meta").replaceChildren(el("span", {className: `badge ${c.status}`}, c.status),
      c.primary_keyword ? el("span", {className: "article-keyword"}, ` targets “${c.primary_keyword}” ·`) : "",
      ` ${fmtNum(c.word_count)} words · /${c.slug} · meta: ${c.meta_title} — ${c.meta_description}`);
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
    $("article-body").replaceChildren(...featured, body,
      inArticle.length ? el("div", {className: "article-gallery"}, inArticle) : "");
  } catch (error) {
    $("article-title").textContent = "Article";
    $("article-body").replaceChildren(el("p", {className: "error"}, `Could not load the article: ${error.message}`));
  }
}
