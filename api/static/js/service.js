// A banner on every page while no job can run here, with the reason the service gives on
// /health: without it, a dashboard whose model cannot load accepts uploads that then wait at
// "queued" for ever, and nothing on the page says why.

import { getServiceProblem } from "./api.js";

const CHECK_EVERY_MS = 5000; // the model loads in the background: its failure comes after the page

/** Show ``banner`` (its [data-reason] holds the reason) while /health names a problem; checks
 * again every few seconds, so it appears once the model fails and goes once the service is well. */
export function watchServiceProblem(banner) {
  const reason = banner.querySelector("[data-reason]");
  async function check() {
    const problem = await getServiceProblem();
    if (problem) reason.textContent = problem;
    banner.hidden = !problem;
    setTimeout(check, CHECK_EVERY_MS);
  }
  check();
}
