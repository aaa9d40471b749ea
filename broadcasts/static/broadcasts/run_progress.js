// The broadcast run page: polls the run's progress (JSON) every 2 seconds until the run has
// finished, and redraws the bar, the counts and the chunks (text only, never HTML).
(function () {
  "use strict";
  var COLUMNS = ["number", "status_label", "recipients", "attempts", "sent_at", "last_error"];

  function draw(box, data) {
    box.querySelectorAll("[data-field]").forEach(function (cell) {
      cell.textContent = data[cell.dataset.field];
    });
    box.querySelector("progress").value = data.percent;
    var rows = data.chunks.map(function (chunk) {
      var row = document.createElement("tr");
      COLUMNS.forEach(function (name) {
        var cell = document.createElement("td");
        cell.textContent = chunk[name];
        row.append(cell);
      });
      return row;
    });
    var body = box.querySelector("tbody[data-chunks]");
    body.replaceChildren.apply(body, rows);
  }

  function poll(box) {
    fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.ok ? response.json() : Promise.reject(response.status);
      })
      .then(function (data) {
        draw(box, data);
        if (!data.finished) setTimeout(poll, 2000, box);
      })
      .catch(function () {
        setTimeout(poll, 10000, box); // the server or the network is away: ask again later
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("broadcast-run-progress");
    if (box && box.dataset.finished !== "1") poll(box);
  });
})();
