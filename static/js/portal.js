// Small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // Ask before a destructive button is pressed.
  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { event.preventDefault(); }
  });

  // Job pages: poll the job's status and move the progress bar until it is done.
  var job = document.querySelector(".job[data-status-url]");
  if (!job) { return; }
  var labels = JSON.parse(job.querySelector(".job-state").getAttribute("data-labels"));
  function show(state) {
    job.querySelector("progress").value = state.progress;
    job.querySelector(".job-progress").textContent = state.progress;
    job.querySelector(".job-state").textContent = labels[state.state] || state.state;
    job.querySelector(".job-message").textContent = state.message || "";
    job.setAttribute("data-state", state.state);
    var note = job.querySelector(".job-note");
    if (note && state.note) { note.textContent = state.note; note.hidden = false; }
    if (state.error) {
      var error = job.querySelector(".job-error");
      error.textContent = state.error;
      error.hidden = false;
    }
    if (state.state === "finished" && state.result && state.result.digest) {
      job.querySelector(".job-download").hidden = false;
    }
    // A job with a per-item result list: the page lists them once the job is done.
    if (state.done && state.result && state.result.items && !job.querySelector(".job-items")) {
      window.location.reload();
    }
  }
  function poll() {
    fetch(job.getAttribute("data-status-url"), { credentials: "same-origin" })
      .then(function (response) { return response.json(); })
      .then(function (state) {
        show(state);
        if (!state.done) { window.setTimeout(poll, 700); }
      })
      .catch(function () { window.setTimeout(poll, 3000); });  // a lost connection: keep trying
  }
  show({ progress: job.querySelector("progress").value, state: job.getAttribute("data-state"),
         message: job.querySelector(".job-message").textContent });
  if (["finished", "failed", "interrupted"].indexOf(job.getAttribute("data-state")) < 0) { poll(); }
})();
