/* The account's sites (the site picker, with the site's timezone) and credit balance. */

import {api} from "./api.js";
import {$, el, fmtNum, notify, siteZone, state} from "./ui.js";

const SITE_STORAGE = "automation.siteId";

export async function loadSites() {
  const {data} = await api("/sites/");
  state.sites = data.sites;
  const select = $("site-select");
  select.replaceChildren(...data.sites.map((s) => el("option", {value: s.id}, `${s.name} (#${s.id})`)));
  const remembered = Number(sessionStorage.getItem(SITE_STORAGE));
  const chosen = data.sites.find((s) => s.id === remembered) || data.sites[0];
  state.siteId = chosen ? chosen.id : null;
  if (chosen) select.value = String(chosen.id);
  if (!chosen) notify("This account has no sites yet.", "error");
  showZone();
}

/** The header's note of the timezone every time on the page is shown in (the chosen site's). */
export function showZone() {
  $("site-zone").textContent = siteZone();
}

export function rememberSite(siteId) { sessionStorage.setItem(SITE_STORAGE, String(siteId)); }

export async function loadCredits() {
  const {data} = await api("/credits/");
  $("credits").textContent = fmtNum(data.credits_balance);
}
