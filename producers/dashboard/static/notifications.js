/* Notifications: the account's channels (signed webhooks, email, Slack) and their delivery log.
   Self-contained: loaded by its own <script type="module"> tag, it adds a "Notifications" button to the top bar
   and builds its modal itself, over /api/v1/automation/notification_channels/. A webhook's signing secret is
   shown once, when the channel is made or its secret rotated; nothing here stores it. */

import {api} from "./api.js";
import {$, el, fmtDate, notify, state} from "./ui.js";

const TYPES = ["run.completed", "run.failed", "run.paused", "content.ready_for_review", "content.publish_failed",
  "credits.low"];
const MODAL = "notifications-modal";
let openChannel = null;  // the channel whose delivery log is shown

function siteName(id) {
  const site = (state.sites || []).find((s) => s.id === id);
  return site ? site.name : `site ${id}`;
}

function buildModal() {
  const kind = el("select", {id: "nc-kind", name: "kind"},
    el("option", {value: "webhook"}, "Webhook (signed JSON)"), el("option", {value: "email"}, "Email"),
    el("option", {value: "slack"}, "Slack (incoming webhook)"));
  const scope = el("select", {id: "nc-scope", name: "scope"},
    el("option", {value: "site"}, "this site"), el("option", {value: "account"}, "every site of the account"));
  const events = el("div", {className: "filters", id: "nc-events"},
    TYPES.map((t) => el("label", {}, el("input", {type: "checkbox", value: t, checked: true}), ` ${t}`)));
  const form = el("form", {id: "nc-form", className: "batch-sizes", autocomplete: "off", novalidate: true},
    el("h3", {}, "Add a channel"),
    el("div", {className: "field"}, el("label", {for: "nc-name"}, "Name"),
      el("input", {id: "nc-name", type: "text", maxlength: "100", required: true, placeholder: "ops webhook"})),
    el("div", {className: "field"}, el("label", {for: "nc-kind"}, "Kind"), kind),
    el("div", {className: "field"}, el("label", {for: "nc-scope"}, "For"), scope),
    el("div", {className: "field", id: "nc-url-field"}, el("label", {for: "nc-url"}, "URL"),
      el("input", {id: "nc-url", type: "text", maxlength: "2000", placeholder: "https://example.com/hooks/automation"})),
    el("div", {className: "field", id: "nc-emails-field", hidden: true}, el("label", {for: "nc-emails"}, "Addresses"),
      el("input", {id: "nc-emails", type: "text", placeholder: "ops@example.com, editor@example.com"})),
    el("div", {className: "field"}, el("span", {}, "Events"), events),
    el("p", {id: "nc-error", className: "error", role: "alert"}),
    el("div", {className: "actions"}, el("button", {type: "submit", className: "primary", id: "nc-add"}, "Add channel")));
  const modal = el("div", {id: MODAL, className: "overlay", hidden: true},
    el("div", {className: "card modal wide", role: "dialog", "aria-labelledby": "nc-title"},
      el("div", {className: "panel-head"}, el("h2", {id: "nc-title"}, "Notifications"), el("span", {className: "spacer"}),
        el("button", {type: "button", id: "nc-close", onclick: () => close()}, "Close")),
      el("p", {className: "muted"}, "Who is told when a run completes, fails or pauses, content waits for review, "
        + "publishing fails or credits run low."),
      el("div", {id: "nc-secret", className: "notice", role: "status", hidden: true}),
      el("table", {className: "history"},
        el("thead", {}, el("tr", {}, ["Name", "Kind", "For", "Target", "Events", "Enabled", ""].map((h) => el("th", {}, h)))),
        el("tbody", {id: "nc-channels"})),
      el("p", {id: "nc-empty", className: "muted", hidden: true}, "No channel yet."),
      el("section", {id: "nc-deliveries", hidden: true},
        el("div", {className: "panel-head"}, el("h3", {id: "nc-deliveries-title"}, "Deliveries"), el("span", {className: "spacer"}),
          el("button", {type: "button", onclick: () => loadDeliveries()}, "Refresh")),
        el("table", {className: "history"},
          el("thead", {}, el("tr", {}, ["When", "Event", "Status", "Attempts", "Code", "ms", "Answer / error", ""]
            .map((h) => el("th", {}, h)))),
          el("tbody", {id: "nc-deliveries-body"}))),
      form));
  document.body.append(modal);
  kind.addEventListener("change", () => {
    $("nc-url-field").hidden = kind.value === "email";
    $("nc-emails-field").hidden = kind.value !== "email";
  });
  form.addEventListener("submit", addChannel);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") close(); });
}

function close() {
  $(MODAL).hidden = true;
  $("nc-secret").hidden = true;
  $("nc-secret").textContent = "";
}

function showSecret(secret, what) {
  const box = $("nc-secret");
  box.replaceChildren(`${what} Store it now: it is shown this once. `, el("code", {}, secret));
  box.hidden = false;
}

async function open() {
  $(MODAL).hidden = false;
  $("nc-scope").options[0].disabled = state.siteId === null;
  if (state.siteId === null) $("nc-scope").value = "account";
  await loadChannels();
}

async function loadChannels() {
  const body = $("nc-channels");
  try {
    const {data} = await api("/notification_channels/", {params: {site_id: state.siteId}});
    body.replaceChildren(...data.channels.map(channelRow));
    $("nc-empty").hidden = data.channels.length > 0;
  } catch (error) {
    notify(`Could not load the notification channels: ${error.message}`, "error");
  }
}

function channelRow(channel) {
  const target = channel.kind === "email" ? channel.emails.join(", ") : (channel.url || channel.url_hint || "");
  const toggle = el("input", {type: "checkbox", checked: channel.enabled, "aria-label": "enabled",
    onchange: async (e) => {
      try { await api(`/notification_channels/${channel.id}`, {method: "PUT", body: {enabled: e.target.checked}}); }
      catch (error) { notify(`Could not change the channel: ${error.message}`, "error"); e.target.checked = !e.target.checked; }
    }});
  const actions = el("td", {},
    el("button", {type: "button", onclick: () => sendTest(channel)}, "Send test"), " ",
    el("button", {type: "button", onclick: () => { openChannel = channel; loadDeliveries(); }}, "Deliveries"), " ",
    channel.kind === "webhook" ? el("button", {type: "button", onclick: () => rotate(channel)}, "Rotate secret") : null, " ",
    el("button", {type: "button", onclick: () => remove(channel)}, "Delete"));
  return el("tr", {dataset: {channel: String(channel.id)}},
    el("td", {}, channel.name), el("td", {}, channel.kind),
    el("td", {}, channel.site_id === null ? "every site" : siteName(channel.site_id)),
    el("td", {}, el("code", {}, target)), el("td", {className: "muted"}, channel.events.join(", ")),
    el("td", {}, toggle), actions);
}

async function addChannel(event) {
  event.preventDefault();
  $("nc-error").textContent = "";
  const kind = $("nc-kind").value;
  const body = {
    name: $("nc-name").value.trim(), kind,
    site_id: $("nc-scope").value === "site" ? state.siteId : null,
    events: [...document.querySelectorAll("#nc-events input:checked")].map((i) => i.value),
  };
  if (kind === "email") body.emails = $("nc-emails").value.split(/[,;\s]+/).filter(Boolean);
  else body.url = $("nc-url").value.trim();
  try {
    const {data} = await api("/notification_channels/", {method: "POST", body});
    if (data.secret) showSecret(data.secret, `Signing secret of “${data.name}”:`);
    $("nc-name").value = ""; $("nc-url").value = ""; $("nc-emails").value = "";
    await loadChannels();
  } catch (error) {
    const detail = error.body && Array.isArray(error.body.detail)
      ? error.body.detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ") : error.message;
    $("nc-error").textContent = detail;
  }
}

async function sendTest(channel) {
  try {
    const {data} = await api(`/notification_channels/${channel.id}/test`, {method: "POST"});
    notify(data.status === "delivered" ? `Test delivered to “${channel.name}” (${data.response_code}, ${data.latency_ms} ms).`
      : `Test to “${channel.name}” failed: ${data.error}`, data.status === "delivered" ? "info" : "error");
    openChannel = channel;
    await loadDeliveries();
  } catch (error) {
    notify(`Could not send the test: ${error.message}`, "error");
  }
}

async function rotate(channel) {
  const hours = prompt("Keep signing with the old secret too for how many hours (0-168)?", "24");
  if (hours === null) return;
  try {
    const {data} = await api(`/notification_channels/${channel.id}/rotate_secret`, {method: "POST",
      body: {overlap_minutes: Math.round(Number(hours) * 60) || 0}});
    showSecret(data.secret, `New signing secret of “${channel.name}”` + (data.previous_secret_valid_until
      ? ` (the old one signs too until ${fmtDate(data.previous_secret_valid_until)}):` : ":"));
  } catch (error) {
    notify(`Could not rotate the secret: ${error.message}`, "error");
  }
}

async function remove(channel) {
  if (!confirm(`Delete the channel “${channel.name}” and its delivery log?`)) return;
  try {
    await api(`/notification_channels/${channel.id}`, {method: "DELETE"});
    if (openChannel && openChannel.id === channel.id) { openChannel = null; $("nc-deliveries").hidden = true; }
    await loadChannels();
  } catch (error) {
    notify(`Could not delete the channel: ${error.message}`, "error");
  }
}

async function loadDeliveries() {
  if (!openChannel) return;
  $("nc-deliveries").hidden = false;
  $("nc-deliveries-title").textContent = `Deliveries of “${openChannel.name}”`;
  try {
    const {data} = await api(`/notification_channels/${openChannel.id}/deliveries`, {params: {limit: 50}});
    $("nc-deliveries-body").replaceChildren(...data.deliveries.map((d) => el("tr", {},
      el("td", {}, fmtDate(d.created_at)), el("td", {}, d.type, el("br"), el("code", {className: "muted"}, d.event_id)),
      el("td", {}, el("span", {className: `badge ${d.status === "delivered" ? "completed" : d.status === "failed" ? "failed" : "paused"}`}, d.status)),
      el("td", {className: "num"}, d.attempts), el("td", {className: "num"}, d.response_code ?? "–"),
      el("td", {className: "num"}, d.latency_ms ?? "–"),
      el("td", {}, d.error ? el("span", {className: "error"}, d.error) : null, d.response_excerpt ? el("code", {}, ` ${d.response_excerpt}`) : null),
      el("td", {}, d.status === "failed" && d.type !== "notification.test"
        ? el("button", {type: "button", onclick: () => redeliver(d.id)}, "Redeliver") : null))));
  } catch (error) {
    notify(`Could not load the deliveries: ${error.message}`, "error");
  }
}

async function redeliver(id) {
  try {
    await api(`/notification_deliveries/${id}/redeliver`, {method: "POST"});
    await loadDeliveries();
  } catch (error) {
    notify(`Could not redeliver: ${error.message}`, "error");
  }
}

function init() {
  buildModal();
  const button = el("button", {id: "notifications", type: "button", title: "Webhooks, email and Slack", onclick: open},
    "🔔 Notifications");
  const anchor = $("configure");
  if (anchor) anchor.after(button);
  else document.querySelector(".topbar")?.append(button);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
else init();
