/* The HTTP API under /api/v1/automation/, with the account's X-API-Key kept in sessionStorage. */

export const API = "/api/v1/automation";
const KEY_STORAGE = "automation.apiKey";

let unauthorized = () => {};

/** What to do when the stored key is refused (the page signs out); set once by the entry module. */
export function onUnauthorized(handler) { unauthorized = handler; }

export function apiKey() { return sessionStorage.getItem(KEY_STORAGE); }
export function storeKey(key) { sessionStorage.setItem(KEY_STORAGE, key); }
export function forgetKey() { sessionStorage.removeItem(KEY_STORAGE); }

const PLACES = new Set(["body", "query", "path", "header"]);

/** What a field's value should look like, for the messages that would otherwise quote a regular expression. */
const PATTERN_WORDS = [
  [/\[01\]\\d\|2\[0-3\]/, "use a 24-hour time as HH:MM, e.g. 09:30"],
  [/a-z0-9/, "use lowercase letters, digits and single hyphens, e.g. my-article"],
  [/\\w/, "use letters, digits, spaces, dots, dashes or underscores"],
];

/** A pydantic error's message in plain words (a 422's item: `type`, `msg`, `ctx`); an unknown kind keeps the
    API's message, less its "Value error, " prefix. */
export function plainMessage(item) {
  const ctx = item.ctx || {};
  const n = (v) => Number(v).toLocaleString();
  switch (item.type) {
    case "missing": return "is required";
    case "greater_than_equal": return `must be at least ${n(ctx.ge)}`;
    case "greater_than": return `must be more than ${n(ctx.gt)}`;
    case "less_than_equal": return `must be at most ${n(ctx.le)}`;
    case "less_than": return `must be less than ${n(ctx.lt)}`;
    case "int_parsing": case "int_from_float": case "int_type": return "must be a whole number";
    case "float_parsing": case "float_type": return "must be a number";
    case "bool_parsing": case "bool_type": return "must be on or off";
    case "string_too_short": return ctx.min_length === 1 ? "cannot be empty" : `must be at least ${n(ctx.min_length)} characters`;
    case "string_too_long": return `must be at most ${n(ctx.max_length)} characters`;
    case "too_short": return ctx.min_length === 1 ? "pick at least one" : `pick at least ${n(ctx.min_length)}`;
    case "too_long": return `at most ${n(ctx.max_length)}`;
    case "string_type": return "must be text";
    case "list_type": return "must be a list";
    case "extra_forbidden": return "is not a setting this form knows";
    case "literal_error": case "enum": return `must be one of ${String(ctx.expected || "the listed values").replace(/'/g, "")}`;
    case "url_parsing": case "url_scheme": case "url_type": return "must be a web address such as https://example.com";
    case "string_pattern_mismatch": {
      const found = PATTERN_WORDS.find(([re]) => re.test(String(ctx.pattern || "")));
      return found ? found[1] : "is not in the expected form";
    }
    default: return String(item.msg || "is not valid").replace(/^(Value|Assertion) error, /, "");
  }
}

/** One validation problem of a 422 list in plain words: its field (when it names one) and its message. */
export function problem(item) {
  const field = (item.loc || []).map(String).filter((part) => !PLACES.has(part) && !/^\d+$/.test(part)).join(".");
  return {field, msg: plainMessage(item)};
}

/** The API's `detail` in plain words: a 409's sentence, or the messages of a 422's list (never raw JSON). */
export function describeDetail(detail, status) {
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map(problem).map(({field, msg}) => (field ? `${field}: ${msg}` : msg)).join("; ");
  }
  if (status >= 500) return `the server could not do it (HTTP ${status}); try again shortly`;
  return `HTTP ${status}`;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(describeDetail(body && body.detail, status));
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
  if (raw && response.ok) return response;
  let data = null;
  if (response.status !== 204) { try { data = await response.json(); } catch (_) { data = null; } }
  if (!response.ok) throw new ApiError(response.status, data);
  return {status: response.status, data};
}

function filenameOf(disposition) {
  const match = /filename="?([^";]+)"?/i.exec(disposition || "");
  return match ? match[1] : null;
}

/** A file the API serves behind the key (a plain link cannot send X-API-Key): fetched, then saved from a Blob.
    Returns the file's name. */
export async function download(path, params, fallbackName = "download") {
  const response = await api(path, {params, raw: true});
  const name = filenameOf(response.headers.get("Content-Disposition")) || fallbackName;
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);  // the browser has the file by then
  return name;
}
