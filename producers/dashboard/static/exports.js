/* Export to a zip (Markdown with front matter, or HTML): the selection's ids or a run's articles. */

import {download} from "./api.js";
import {state} from "./ui.js";

/** Downloads the site's articles chosen by `ids` ("1,2,3") or `run_id`, in `format`; returns the file's name. */
export async function exportArticles({ids = null, run_id = null, format = "markdown"}) {
  return download("/export/", {site_id: state.siteId, ids, run_id, format}, `export-${format}.zip`);
}

/** "Export this run": the run's articles as a zip, with what happened written in `message`. */
export async function exportRun(runId, format, button, message) {
  if (!runId) return;
  button.disabled = true;
  message.className = "action-message muted";
  message.textContent = "Preparing the zip…";
  try {
    const name = await exportArticles({run_id: runId, format});
    message.className = "action-message ok";
    message.textContent = `${name} downloaded.`;
  } catch (error) {
    message.className = "action-message error";
    message.textContent = error.status === 401 ? "" : `Not exported: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}
