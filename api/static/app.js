// The dashboard's entry point: wires the upload form, job list and job view to the URL (#/ or #/jobs/<id>).

import { JobDetail } from "./js/detail.js";
import { JobList } from "./js/jobs.js";
import { watchServiceProblem } from "./js/service.js";
import { UploadForm } from "./js/upload.js";

const JOB_ROUTE = /^#\/jobs\/([A-Za-z0-9_-]+)$/;

function showConnectionProblem(message) {
  const banner = document.getElementById("connection-problem");
  if (!message) {
    banner.hidden = true;
    return;
  }
  banner.textContent = `${message} Retrying…`;
  banner.hidden = false;
}

function main() {
  const jobList = new JobList({ onConnectionProblem: showConnectionProblem });
  const detail = new JobDetail({
    onConnectionProblem: showConnectionProblem,
    onDeleted: () => {
      window.location.hash = "#/";
    },
  });
  new UploadForm({ onJobCreated: () => jobList.refreshNow() });
  watchServiceProblem(document.getElementById("service-problem"));

  const homeView = document.getElementById("home-view");
  const detailView = document.getElementById("detail-view");

  function route({ moveFocus }) {
    const match = JOB_ROUTE.exec(window.location.hash);
    showConnectionProblem(null);
    if (match) {
      jobList.stop();
      homeView.hidden = true;
      detailView.hidden = false;
      detail.show(match[1]);
      document.title = "Job · CattleCounter";
      if (moveFocus) document.getElementById("detail-heading").focus();
    } else {
      detail.hide();
      detailView.hidden = true;
      homeView.hidden = false;
      jobList.start();
      document.title = "CattleCounter";
      if (moveFocus) document.getElementById("upload-heading").focus();
    }
  }

  // moving focus to the new view's heading tells keyboard and screen-reader users the view changed
  window.addEventListener("hashchange", () => route({ moveFocus: true }));
  route({ moveFocus: false });
}

main();
