// The console's one script: live updates where a page asks for them. Every page works
// without it.
"use strict";

// --- Runs (run page): the live log. A page whose log is at its end and whose run has not
// ended carries <pre id="log" data-follow="URL">; new lines are appended as text (never as
// HTML) and the status is updated when the run ends. Other pages are left alone.
(function () {
  var log = document.querySelector("pre#log[data-follow]");
  if (!log || !window.EventSource) { return; }
  var feed = new EventSource(log.getAttribute("data-follow"));
  var count = document.getElementById("log-count");
  var lines = count ? parseInt(count.textContent, 10) || 0 : 0;
  feed.addEventListener("line", function (e) {
    var l = JSON.parse(e.data);
    var text = (l.host ? "[" + l.host + "] " : "") + (l.stream === "stderr" ? "! " : "") + l.line + "\n";
    log.appendChild(document.createTextNode(text));
    lines = l.id;
    if (count) { count.textContent = lines + " lines"; }
  });
  feed.addEventListener("end", function (e) {
    feed.close();
    var run = JSON.parse(e.data);
    var status = document.getElementById("status");
    if (status) { status.textContent = run.status; }
    var cancel = document.getElementById("cancel-form");
    if (cancel) { cancel.parentNode.removeChild(cancel); }
    document.body.setAttribute("data-run-ended", run.status);
  });
  // A broken stream is not retried from its start (lines would repeat): reload to resume.
  feed.addEventListener("error", function () { feed.close(); });
}());
