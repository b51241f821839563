// The progress bar of a long import: polls its status every second, moves the bar, and goes to the
// import's result when it is over (without JavaScript the page reloads itself every two seconds).
(function () {
  "use strict";
  var card = document.getElementById("import-progress");
  if (!card) { return; }
  var bar = document.getElementById("import-bar");
  var state = document.getElementById("import-state");
  function poll() {
    fetch(card.dataset.statusUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (status) {
        if (!status) { return; }
        if (status.next) { window.location.assign(status.next); return; }
        if (status.status === "error") { state.textContent = card.dataset.error; return; }
        var total = Math.max(status.total || 0, 1);
        var done = Math.min(status.done || 0, total);
        bar.max = total;
        bar.value = done;
        state.textContent = card.dataset.read.replace("{p}", String(Math.round(100 * done / total)));
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 3000); });
  }
  window.setTimeout(poll, 500);
}());
