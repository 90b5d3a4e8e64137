// Small progressive enhancements; every page works without them.
(function () {
  "use strict";

  // Ask before a destructive or irreversible action. The question may sit on the button that was
  // pressed (one form, several actions) or on the form itself.
  document.addEventListener("submit", function (event) {
    var submitter = event.submitter;
    var message = (submitter && submitter.getAttribute("data-confirm")) || event.target.getAttribute("data-confirm");
    var counted = submitter && submitter.getAttribute("data-count");
    if (message && counted) {  // "… {n} học sinh đã chọn": how many boxes are ticked now
      var n = event.target.querySelectorAll("input[name='" + counted + "']:checked").length;
      message = message.replace("{n}", String(n));
    }
    if (message && !window.confirm(message)) { event.preventDefault(); event.stopImmediatePropagation(); }
  }, true);

  // The first field of a form takes the focus only when it is already in view: a form lower down the
  // page must not scroll the page away from what is above it.
  var first = document.querySelector("[data-autofocus]");
  if (first && !document.activeElement.matches("input, textarea, select")) {
    var box = first.getBoundingClientRect();
    if (box.top >= 0 && box.bottom <= window.innerHeight) { first.focus({ preventScroll: true }); }
  }

  // A header box that ticks every row's box of the same name.
  document.addEventListener("change", function (event) {
    var name = event.target.getAttribute && event.target.getAttribute("data-check-all");
    if (!name || !event.target.form) { return; }
    event.target.form.querySelectorAll("input[name='" + name + "']").forEach(function (box) {
      box.checked = event.target.checked;
    });
  });

  // Print buttons (no inline handlers: the pages run under a Content-Security-Policy without inline script).
  document.addEventListener("click", function (event) {
    var target = event.target.closest ? event.target.closest("[data-print]") : null;
    if (target) { event.preventDefault(); window.print(); }
  });

  // The district board while its counts are being redone in the background: look again shortly.
  var refreshing = document.querySelector("[data-reload-after]");
  if (refreshing) {
    window.setTimeout(function () { window.location.reload(); },
                      1000 * parseInt(refreshing.getAttribute("data-reload-after"), 10));
  }

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
