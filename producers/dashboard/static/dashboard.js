/* Automation dashboard: vanilla JS over /api/v1/automation/ (X-API-Key kept in sessionStorage). */
(() => {
  "use strict";

  const API = "/api/v1/automation";
  const KEY_STORAGE = "automation.apiKey";
  const SITE_STORAGE = "automation.siteId";
  const STAGE_NAMES = {1: "Keywords → Clusters", 2: "Clusters → Ideas", 3: "Ideas → Tasks", 4: "Tasks → Content",
    5: "Content → Image prompts", 6: "Prompts → Images", 7: "Review gate"};
  const ICONS = {pending: "⏳", active: "🔄", completed: "✅", failed: "❌"};
  const CONFIG_FIELDS = ["is_enabled", "frequency", "scheduled_time", "timezone",
    "stage_1_batch_size", "stage_2_batch_size", "stage_3_batch_size", "stage_4_batch_size",
    "stage_5_batch_size", "stage_6_batch_size"];
  const RUN_POLL_MS = 2500;   // current_run while a run is active (the API asks for at most every 5 s)
  const IDLE_POLL_MS = 5000;  // current_run when no run is active (picks up scheduled runs)
  const LOG_POLL_MS = 3000;

  const $ = (id) => document.getElementById(id);
  const state = {siteId: null, sites: [], active: null, shown: null, timers: {}, blobUrls: [], busy: false};

  // ---------- helpers ----------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fmtDate(value) {
    if (!value) return "–";
    const date = new Date(value);
    return isNaN(date) ? String(value) : date.toLocaleString(undefined, {dateStyle: "short", timeStyle: "medium"});
  }

  const fmtNum = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString());

  class ApiError extends Error {
    constructor(status, body) {
      const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${status}`;
      super(detail);
      this.status = status;
      this.body = body;
    }
  }

  function apiKey() { return sessionStorage.getItem(KEY_STORAGE); }

  async function api(path, {method = "GET", params = null, body = undefined, raw = false, key = null} = {}) {
    const url = new URL(API + path, location.origin);
    if (params) for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
    const headers = {"X-API-Key": key || apiKey() || ""};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
    if (response.status === 401 && !key) { signOut("Your API key was refused; enter it again."); throw new ApiError(401, null); }
    if (raw) {
      if (!response.ok) throw new ApiError(response.status, null);
      return response;
    }
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    if (!response.ok) throw new ApiError(response.status, data);
    return {status: response.status, data};
  }

  function notify(message, kind = "info") {
    const box = $("notice");
    box.textContent = message;
    box.className = `notice ${kind}`;
    box.hidden = !message;
    clearTimeout(state.timers.notice);
    if (message && kind !== "error") state.timers.notice = setTimeout(() => { box.hidden = true; }, 8000);
  }

  function showModal(id, show) { $(id).hidden = !show; }

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
    sessionStorage.removeItem(KEY_STORAGE);
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
    sessionStorage.setItem(KEY_STORAGE, key);
    await start();
  }

  // ---------- sites, credits ----------
  async function loadSites() {
    const {data} = await api("/sites/");
    state.sites = data.sites;
    const select = $("site-select");
    select.replaceChildren(...data.sites.map((s) => el("option", {value: s.id}, `${s.name} (#${s.id})`)));
    const remembered = Number(sessionStorage.getItem(SITE_STORAGE));
    const chosen = data.sites.find((s) => s.id === remembered) || data.sites[0];
    state.siteId = chosen ? chosen.id : null;
    if (chosen) select.value = String(chosen.id);
    if (!chosen) notify("This account has no sites yet.", "error");
  }

  async function loadCredits() {
    const {data} = await api("/credits/");
    $("credits").textContent = fmtNum(data.credits_balance);
  }

  // ---------- stage cards ----------
  function renderStages(run) {
    const byStage = {};
    if (run && run.stages) for (const s of run.stages) byStage[s.stage] = s;
    const cards = [];
    for (let n = 1; n <= 7; n++) {
      const s = byStage[n] || {status: "pending", items_in: 0, items_out: 0, batches_done: 0, batches_total: 0, credits: 0};
      const pct = s.batches_total ? Math.round((100 * s.batches_done) / s.batches_total) : (s.status === "completed" ? 100 : 0);
      cards.push(el("div", {className: `stage-card ${s.status}`, dataset: {stage: n, status: s.status}},
        el("div", {className: "stage-head"},
          el("span", {className: "stage-number"}, `Stage ${n}`),
          el("span", {className: "stage-state"}, el("span", {className: "stage-label"}, s.status),
            el("span", {className: "stage-icon", title: s.status, "aria-label": s.status}, ICONS[s.status] || "⏳"))),
        el("div", {className: "stage-name"}, STAGE_NAMES[n]),
        el("div", {className: "bar"}, el("div", {className: "bar-fill", style: `width:${pct}%`})),
        el("dl", {},
          el("dt", {}, "Items"), el("dd", {className: "items"}, `${fmtNum(s.items_in)} → ${fmtNum(s.items_out)}`),
          el("dt", {}, "Batches"), el("dd", {className: "batches"}, `${fmtNum(s.batches_done)} / ${fmtNum(s.batches_total)}`),
          el("dt", {}, "Credits"), el("dd", {className: "stage-credits"}, fmtNum(s.credits)))));
    }
    $("stages").replaceChildren(...cards);
    const summary = $("run-summary");
    if (!run) { summary.replaceChildren("No run yet"); return; }
    summary.replaceChildren(
      el("span", {className: `badge ${run.status}`, id: "run-status"}, run.status), " ",
      el("code", {}, run.run_id), ` · ${run.trigger} · started ${fmtDate(run.started_at)}`,
      run.completed_at ? ` · completed ${fmtDate(run.completed_at)}` : "",
      ` · ${fmtNum(run.total_credits_used)} credits (est. ${fmtNum(run.estimated_credits)})`,
      run.pause_reason && run.status === "paused" ? ` · ${run.pause_reason}` : "",
      run.error_message ? el("span", {className: "error"}, ` · ${run.error_message}`) : "");
  }

  function updateButtons() {
    const hasSite = state.siteId !== null;
    const shown = state.shown;
    $("run-now").disabled = state.busy || !hasSite || state.active !== null;
    $("pause").disabled = state.busy || !shown || shown.status !== "running";
    $("resume").disabled = state.busy || !shown || !(shown.status === "paused" || (shown.status === "failed" && !state.active));
    $("configure").disabled = !hasSite;
  }

  // ---------- polling ----------
  function stopPolling() {
    for (const name of ["run", "log", "slow"]) { clearTimeout(state.timers[name]); state.timers[name] = null; }
  }

  async function pollRun() {
    clearTimeout(state.timers.run);
    const siteId = state.siteId;
    if (siteId === null) return;
    try {
      const {data} = await api("/current_run/", {params: {site_id: siteId}});
      if (siteId !== state.siteId) return;
      const wasActive = state.active;
      state.active = data.run;
      if (data.run) {
        state.shown = data.run;
      } else if (wasActive || (state.shown && ["running", "paused"].includes(state.shown.status))) {
        // the run just ended: show its final state, and refresh what it changed
        state.shown = (await api(`/runs/${encodeURIComponent((wasActive || state.shown).run_id)}`)).data;
        loadHistory(); loadReview(); loadCredits(); pollLog();
      } else if (!state.shown) {
        const {data: hist} = await api("/history/", {params: {site_id: siteId}});
        state.shown = hist.runs.length ? (await api(`/runs/${encodeURIComponent(hist.runs[0].run_id)}`)).data : null;
      }
      if (data.run && !wasActive) loadHistory();
      renderStages(state.shown);
      updateButtons();
    } catch (error) {
      if (error.status !== 401) notify(`Could not refresh the run: ${error.message}`, "error");
    } finally {
      if (apiKey() && siteId === state.siteId) state.timers.run = setTimeout(pollRun, state.active ? RUN_POLL_MS : IDLE_POLL_MS);
    }
  }

  async function pollLog() {
    clearTimeout(state.timers.log);
    try {
      const run = state.shown;
      if (run) {
        const {data} = await api("/logs/", {params: {run_id: run.run_id, lines: $("log-lines").value}});
        const pre = $("log");
        const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
        pre.textContent = data.lines.length ? data.lines.join("\n") : "(no log lines yet)";
        if (atBottom) pre.scrollTop = pre.scrollHeight;
        $("log-run").textContent = run.run_id;
      } else {
        $("log").textContent = "No run yet.";
        $("log-run").textContent = "";
      }
    } catch (error) {
      if (error.status !== 401) $("log").textContent = `Could not load the log: ${error.message}`;
    } finally {
      if (apiKey()) state.timers.log = setTimeout(pollLog, LOG_POLL_MS);
    }
  }

  async function pollSlow() {
    clearTimeout(state.timers.slow);
    try { await loadCredits(); } catch (_) { /* shown by the next refresh */ }
    if (apiKey()) state.timers.slow = setTimeout(pollSlow, 15000);
  }

  // ---------- history ----------
  async function loadHistory() {
    if (state.siteId === null) return;
    const params = {site_id: state.siteId, status: $("filter-status").value, trigger: $("filter-trigger").value,
      date_from: $("filter-from").value, date_to: $("filter-to").value};
    try {
      const {data} = await api("/history/", {params});
      const rows = data.runs.map((run) => el("tr", {className: "clickable", dataset: {runId: run.run_id},
        onclick: () => openRun(run.run_id), tabindex: "0", onkeydown: (e) => { if (e.key === "Enter") openRun(run.run_id); }},
        el("td", {}, el("code", {}, run.run_id)),
        el("td", {}, el("span", {className: `badge ${run.status}`}, run.status)),
        el("td", {}, run.trigger),
        el("td", {}, fmtDate(run.started_at)),
        el("td", {}, fmtDate(run.completed_at)),
        el("td", {className: "num"}, fmtNum(run.total_credits_used)),
        el("td", {className: "num"}, `${run.current_stage}/7`)));
      $("history-body").replaceChildren(...rows);
      $("history-empty").hidden = rows.length > 0;
    } catch (error) {
      if (error.status !== 401) notify(`Could not load the history: ${error.message}`, "error");
    }
  }

  async function openRun(runId) {
    state.openRunId = runId;
    $("run-title").textContent = `Run ${runId}`;
    $("run-stages").replaceChildren();
    $("run-log").textContent = "Loading…";
    $("run-log-stage").value = "";
    showModal("run-modal", true);
    try {
      const {data: run} = await api(`/runs/${encodeURIComponent(runId)}`);
      $("run-meta").replaceChildren(el("span", {className: `badge ${run.status}`}, run.status),
        ` ${run.trigger} · started ${fmtDate(run.started_at)} · completed ${fmtDate(run.completed_at)} · `
        + `${fmtNum(run.total_credits_used)} credits used of ${fmtNum(run.estimated_credits)} estimated`,
        run.error_message ? el("span", {className: "error"}, ` · ${run.error_message}`) : "");
      $("run-stages").replaceChildren(...run.stages.map((s) => el("tr", {dataset: {stage: s.stage, status: s.status}},
        el("td", {}, `${s.stage}. ${STAGE_NAMES[s.stage]}`),
        el("td", {}, `${ICONS[s.status]} ${s.status}`),
        el("td", {className: "num"}, fmtNum(s.items_in)), el("td", {className: "num"}, fmtNum(s.items_out)),
        el("td", {className: "num"}, `${s.batches_done}/${s.batches_total}`),
        el("td", {className: "num"}, fmtNum(s.credits)))));
      await loadRunLog();
    } catch (error) {
      $("run-log").textContent = `Could not load the run: ${error.message}`;
    }
  }

  async function loadRunLog() {
    const stage = $("run-log-stage").value;
    try {
      const {data} = await api("/logs/", {params: {run_id: state.openRunId, lines: 500, stage}});
      $("run-log").textContent = data.lines.join("\n") || "(no log lines)";
    } catch (error) {
      $("run-log").textContent = `Could not load the log: ${error.message}`;
    }
  }

  // ---------- run control ----------
  async function runNowClicked() {
    if (state.siteId === null) return;
    $("estimate-body").replaceChildren(el("tr", {}, el("td", {}, "Estimating…")));
    $("estimate-message").textContent = "";
    $("estimate-start").disabled = true;
    showModal("estimate-modal", true);
    try {
      const {data: est} = await api("/estimate/", {params: {site_id: state.siteId}});
      const rows = Object.entries(est.per_stage).map(([stage, credits]) =>
        el("tr", {}, el("td", {}, `Stage ${stage} · ${STAGE_NAMES[stage] || ""}`), el("td", {className: "num"}, fmtNum(credits))));
      rows.push(el("tr", {className: "total"}, el("td", {}, "Estimated total"), el("td", {className: "num", id: "estimate-total"}, fmtNum(est.total))));
      rows.push(el("tr", {}, el("td", {}, `Required (with ${Math.round(est.buffer * 100)}% buffer)`),
        el("td", {className: "num", id: "estimate-required"}, fmtNum(est.required))));
      rows.push(el("tr", {}, el("td", {}, "Your balance"), el("td", {className: "num", id: "estimate-balance"}, fmtNum(est.balance))));
      $("estimate-body").replaceChildren(...rows);
      if (!est.can_start) {
        $("estimate-message").textContent = est.reason === "insufficient credits"
          ? `Not enough credits: this run needs ${fmtNum(est.required)} (estimate ${fmtNum(est.total)} + ${Math.round(est.buffer * 100)}% buffer) and the balance is ${fmtNum(est.balance)}.`
          : `Cannot start: ${est.reason}.`;
      }
      $("estimate-start").disabled = !est.can_start;
    } catch (error) {
      $("estimate-message").textContent = `Could not get the estimate: ${error.message}`;
    }
  }

  function refusalMessage(error) {
    const b = error.body || {};
    if (error.status === 409) return `A run is already active on this site${b.active_run_id ? ` (${b.active_run_id})` : ""}.`;
    if (error.status === 402) {
      return `Not enough credits: this run needs ${fmtNum(b.required)} (estimate ${fmtNum(b.estimate)} + `
        + `${Math.round((b.buffer || 0) * 100)}% buffer) and the balance is ${fmtNum(b.balance)}.`;
    }
    return `The run could not be started: ${error.message}`;
  }

  async function startRun() {
    $("estimate-start").disabled = true;
    try {
      const {data} = await api("/run_now/", {method: "POST", params: {site_id: state.siteId}});
      showModal("estimate-modal", false);
      notify(data.run_id ? `Run ${data.run_id} started.` : "Run requested; it will appear shortly.");
      state.shown = null;
      await pollRun();
      loadHistory();
      pollLog();
    } catch (error) {
      if (error.status === 401) return;
      $("estimate-message").textContent = refusalMessage(error);
      if (error.status === 409) pollRun();
    }
  }

  async function control(action) {
    const run = state.shown;
    if (!run) return;
    state.busy = true;
    updateButtons();
    try {
      const {data} = await api(`/${action}/`, {method: "POST", params: {run_id: run.run_id}});
      notify(`Run ${data.run_id} is ${data.status}.`);
    } catch (error) {
      if (error.status !== 401) notify(`Could not ${action} the run: ${error.message}`, "error");
    } finally {
      state.busy = false;
      await pollRun();
      loadHistory();
    }
  }

  // ---------- configuration ----------
  function clearFieldErrors() {
    for (const span of document.querySelectorAll("#config-form .field-error")) span.textContent = "";
    for (const input of document.querySelectorAll("#config-form [aria-invalid]")) input.removeAttribute("aria-invalid");
    $("config-message").textContent = "";
  }

  async function openConfig() {
    clearFieldErrors();
    showModal("config-modal", true);
    try {
      const {data: cfg} = await api("/config/", {params: {site_id: state.siteId}});
      $("cfg-is_enabled").checked = cfg.is_enabled;
      $("cfg-frequency").value = cfg.frequency;
      $("cfg-scheduled_time").value = cfg.scheduled_time;
      $("cfg-timezone").value = cfg.timezone;
      for (let n = 1; n <= 6; n++) $(`cfg-stage_${n}_batch_size`).value = cfg[`stage_${n}_batch_size`];
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
    for (let n = 1; n <= 6; n++) {
      const raw = $(`cfg-stage_${n}_batch_size`).value.trim();
      const num = Number(raw);
      body[`stage_${n}_batch_size`] = raw !== "" && Number.isFinite(num) ? num : raw;  // the API explains what's wrong
    }
    return body;
  }

  function showConfigErrors(detail) {
    const general = [];
    for (const error of Array.isArray(detail) ? detail : [{loc: [], msg: String(detail)}]) {
      const loc = (error.loc || []).map(String);
      const field = loc.find((part) => CONFIG_FIELDS.includes(part));
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

  async function saveConfig(event) {
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

  function buildConfigForm() {
    const fields = [];
    for (let n = 1; n <= 6; n++) {
      fields.push(el("div", {className: "field"},
        el("label", {for: `cfg-stage_${n}_batch_size`}, `Stage ${n} · ${STAGE_NAMES[n]}`),
        el("input", {id: `cfg-stage_${n}_batch_size`, name: `stage_${n}_batch_size`, type: "number", step: "1"}),
        el("span", {className: "field-error", dataset: {errorFor: `stage_${n}_batch_size`}})));
    }
    $("batch-fields").replaceChildren(...fields);
    let zones = [];
    try { zones = Intl.supportedValuesOf("timeZone"); } catch (_) { zones = ["UTC"]; }
    $("timezones").replaceChildren(...zones.map((z) => el("option", {value: z})));
  }

  // ---------- content in review ----------
  async function loadReview() {
    if (state.siteId === null) return;
    try {
      const {data} = await api("/review/", {params: {site_id: state.siteId}});
      $("review-total").textContent = `${fmtNum(data.total)} waiting`;
      const items = data.items.map((item) => el("li", {},
        el("button", {type: "button", className: "link review-item", dataset: {contentId: item.id}, onclick: () => openArticle(item.id)},
          item.title),
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

  function revokeBlobs() {
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

  // ---------- wiring ----------
  async function selectSite(siteId) {
    stopPolling();
    state.siteId = siteId;
    state.active = null;
    state.shown = null;
    sessionStorage.setItem(SITE_STORAGE, String(siteId));
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

  function init() {
    buildConfigForm();
    renderStages(null);
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
    $("run-log-stage").append(...[1, 2, 3, 4, 5, 6, 7].map((n) => el("option", {value: n}, `${n}. ${STAGE_NAMES[n]}`)));
    $("run-log-stage").addEventListener("change", loadRunLog);
    $("article-close").addEventListener("click", () => { showModal("article-modal", false); revokeBlobs(); });
    document.addEventListener("keydown", (e) => {
      if (e.key !== "Escape") return;
      for (const id of ["estimate-modal", "config-modal", "run-modal", "article-modal"]) showModal(id, false);
      revokeBlobs();
    });
    if (apiKey()) start(); else askForKey();
  }

  document.addEventListener("DOMContentLoaded", init);
})();
