// worldgate admin dashboard: the Live feeds panel. Reads /admin/api/live with the session cookie every few
// seconds: per feed its status, subscribers (all replicas, and this one), last frame, frames sent and dropped,
// lag; start/stop keep a feed polled without subscribers (a same-origin POST, kept in the audit log).
(function () {
  "use strict";

  var EVERY_MS = 5000;

  function $(id) { return document.getElementById(id); }

  function call(method, path) {
    return fetch(path, { method: method, credentials: "same-origin", headers: { accept: "application/json" } })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.message || "HTTP " + response.status);
          return body;
        });
      });
  }

  function stamp(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    return new Date(seconds * 1000).toISOString().replace("T", " ").replace(/\.\d{3}Z$/, "Z");
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function toggle(row, feed) {
    var td = cell(row, "");
    var button = document.createElement("button");
    button.type = "button";
    button.className = "small";
    button.textContent = feed.keep_alive ? "Stop keep-alive" : "Keep alive";
    button.addEventListener("click", function () {
      button.disabled = true;
      call("POST", "/admin/api/live/" + encodeURIComponent(feed.id) + "/" + (feed.keep_alive ? "stop" : "start"))
        .then(load, function (error) { $("live-message").textContent = error.message; })
        .then(function () { button.disabled = false; });
    });
    td.appendChild(button);
  }

  function render(body) {
    var tbody = document.querySelector("#live-table tbody");
    tbody.textContent = "";
    body.feeds.forEach(function (feed) {
      var row = document.createElement("tr");
      row.dataset.stream = feed.id;
      cell(row, feed.id);
      cell(row, feed.feed_status || "–", "status " + (feed.feed_status || ""));
      cell(row, feed.running ? "yes" : "no");
      cell(row, feed.subscribers + " (" + feed.subscribers_here + " here)", "num");
      cell(row, stamp(feed.last_frame_at));
      cell(row, feed.frames_sent, "num");
      cell(row, feed.frames_dropped, "num");
      cell(row, feed.subscribers_dropped, "num");
      cell(row, feed.lag_s ? feed.lag_s.toFixed(3) + " s" : "0", "num");
      toggle(row, feed);
      tbody.appendChild(row);
    });
    $("live-message").textContent = body.totals.subscribers + " subscribers; windows of " + body.window_s + " s" +
      (body.scheduler ? "; the scheduler refreshes every feed" : "; feeds are polled while watched or kept alive");
  }

  function load() {
    if (!$("live-table")) return Promise.resolve();
    return call("GET", "/admin/api/live").then(render, function (error) {
      $("live-message").textContent = error.message;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    load();
    setInterval(load, EVERY_MS);
  });
})();
