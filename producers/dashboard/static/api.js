/* The HTTP API under /api/v1/automation/, with the account's X-API-Key kept in sessionStorage. */

export const API = "/api/v1/automation";
const KEY_STORAGE = "automation.apiKey";

let unauthorized = () => {};

/** What to do when the stored key is refused (the page signs out); set once by the entry module. */
export function onUnauthorized(handler) { unauthorized = handler; }

export function apiKey() { return sessionStorage.getItem(KEY_STORAGE); }
export function storeKey(key) { sessionStorage.setItem(KEY_STORAGE, key); }
export function forgetKey() { sessionStorage.removeItem(KEY_STORAGE); }

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.body = body;
  }
}

export async function api(path, {method = "GET", params = null, body = undefined, raw = false, key = null} = {}) {
  const url = new URL(API + path, location.origin);
  if (params) for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  const headers = {"X-API-Key": key || apiKey() || ""};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  if (response.status === 401 && !key) { unauthorized("Your API key was refused; enter it again."); throw new ApiError(401, null); }
  if (raw) {
    if (!response.ok) throw new ApiError(response.status, null);
    return response;
  }
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) throw new ApiError(response.status, data);
  return {status: response.status, data};
}
