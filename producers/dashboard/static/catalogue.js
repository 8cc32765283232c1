/* The stage catalogue, fetched once from GET /api/v1/automation/stages: the page names no stage itself. */

import {api} from "./api.js";

let stages = [];

/** Fetch the catalogue unless it is already here (a refused key leaves it empty, so the next sign-in retries). */
export async function loadCatalogue() {
  if (!stages.length) stages = (await api("/stages")).data.stages;
  return stages;
}

/** Every stage, in pipeline order. */
export const allStages = () => stages;

/** The stages that run in batches (the ones with a batch size to configure). */
export const batchStages = () => stages.filter((s) => s.default_batch_size !== null);

/** A stage's name as a label: "Keywords → clusters". */
export function stageName(number) {
  const stage = stages.find((s) => s.number === Number(number));
  return stage ? stage.name.charAt(0).toUpperCase() + stage.name.slice(1) : "";
}
