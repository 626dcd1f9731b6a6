// worldgate admin console: the Source Matrix (every stream, with its sharing to change and a fetch to force) and
// the Scheduler (its fetch tiers and each stream's schedule). Uses console.js's WG; refreshed with every panel.
(function () {
  "use strict";

  var WG = window.WG;
  var $ = WG.$;
  var cell = WG.cell;
  var SHARING = ["ok", "maintenance", "not_shared"];
  var WHY = {
    maintenance: "listed, but not sold (its paid reads answer 503) until you share it again",
    not_shared: "gone from the catalog, discovery, MCP and /v1/world; its URL answers 404",
  };

  function backfillText(row) { // as the Time Machine panel words it (history.js)
    if (!row.recorded) return "–";
    var b = row.backfill;
    if (!b) return "not kept upstream";
    var text = b.days_done + " of " + b.max_days + " days";
    return b.last_day ? text + " (to " + b.last_day + ")" : text;
  }

  function setSharing(row, select) {
    var state = select.value;
    select.blur(); // the matrix is not redrawn under a focused select: let it show the outcome
    WG.act({
      ask: state === "ok" ? null : "Set " + row.id + " to " + state.replace("_", " ") + "? It is then " + WHY[state] + ".",
      verb: state === "not_shared" ? "Unshare" : "Maintenance",
      method: "PUT", path: "/admin/api/streams/" + encodeURIComponent(row.id) + "/sharing", body: { sharing: state },
      button: select, messageId: "matrix-status", done: function (a) { return a.stream + " is now " + a.sharing; },
    }).then(function (answer) {
      if (!answer) select.value = row.sharing; // cancelled or refused: show what still holds
    });
  }

  function fetchNow(row, btn) {
    WG.act({
      method: "POST", path: "/admin/api/streams/" + encodeURIComponent(row.id) + "/fetch", body: {},
      button: btn, messageId: "matrix-status", working: "fetching " + row.id + "…",
      done: function (a) {
        var said = a.outcome === "fetched" ? a.stream + " fetched: " + a.records + (a.records === 1 ? " record" : " records")
          : a.stream + " not fetched: " + a.reason;
        return a.sharing_changed && a.sharing_changed.length ? said + "; sharing changed: " +
          a.sharing_changed.join(", ") : said;
      },
    });
  }

  function actions(tr, row) {
    var td = document.createElement("td");
    td.className = "actions";
    var select = document.createElement("select");
    select.className = "sharing";
    select.setAttribute("aria-label", "sharing of " + row.id);
    SHARING.forEach(function (state) {
      var option = document.createElement("option");
      option.value = state;
      option.textContent = state.replace("_", " ");
      select.appendChild(option);
    });
    select.value = row.sharing;
    select.addEventListener("change", function () { setSharing(row, select); });
    td.appendChild(select);
    var fetchable = row.interval_s !== null && row.source;
    var fetch = WG.button("Fetch", "ghost fetch", function (btn) { fetchNow(row, btn); });
    fetch.disabled = !fetchable;
    fetch.title = fetchable ? "fetch " + (row.source || "") + " now, past the cache" : "bundled: nothing to fetch";
    td.appendChild(fetch);
    tr.appendChild(td);
  }

  function renderMatrix(streams) {
    var table = $("matrix");
    if (table.contains(document.activeElement) && document.activeElement.tagName === "SELECT") return;
    WG.rows("matrix", streams, function (tr, s) {
      tr.dataset.stream = s.id;
      tr.dataset.sharing = s.sharing;
      cell(tr, s.id, "key", s.name);
      cell(tr, s.category);
      cell(tr, s.type);
      cell(tr, s.upstream, null, s.source || null);
      cell(tr, s.interval_s === null ? "static" : WG.duration(s.interval_s), "num");
      cell(tr, WG.stamp(s.fetched_at), "volatile");
      WG.badge(tr, s.freshness, "freshness");
      var health = WG.badge(tr, s.health, "health");
      if (s.last_error) health.title = s.last_error;
      var shared = WG.badge(tr, s.sharing, "sharing");
      shared.title = s.sharing_automatic ? "its source is failing: sold again once it answers" :
        s.sharing_set_by ? "set by " + s.sharing_set_by : "the settings' default";
      cell(tr, s.points, "num points");
      cell(tr, s.price_atomic === null || s.price_atomic === undefined ? "–" : WG.atomicToUsdc(s.price_atomic), "num");
      cell(tr, s.parent, "key");
      cell(tr, backfillText(s), "backfill");
      actions(tr, s);
    }, "no streams", 14);
  }

  function renderScheduler(view) {
    $("scheduler-state").textContent = view.running === null ? "not known in this app" : view.running ?
      "running in every worker: a shared fetch is refreshed at " + Math.round(view.refresh_at * 100) +
      "% of its interval, less up to " + Math.round(view.jitter * 100) + "% jitter; per-point reads on demand" :
      "off in this gateway (WORLDGATE_SCHEDULER=false): streams are fetched when they are read";
    WG.rows("tiers", view.tiers, function (tr, t) {
      tr.dataset.tier = t.tier;
      cell(tr, t.tier, "key");
      cell(tr, t.interval_s === null ? "–" : WG.duration(t.interval_s), "num");
      cell(tr, t.fetch_every_s === null ? "–" : WG.duration(t.fetch_every_s), "num");
      ["total", "shared", "fresh", "stale", "never", "on_demand", "bundled"].forEach(function (k) {
        cell(tr, t[k], "num " + k);
      });
    }, "no tiers", 10);
    WG.rows("schedule", view.streams, function (tr, s) {
      tr.dataset.stream = s.id;
      cell(tr, s.id, "key");
      cell(tr, s.source);
      cell(tr, s.type);
      cell(tr, s.mode.replace("_", " "));
      cell(tr, s.interval_s === null ? "–" : WG.duration(s.interval_s), "num");
      cell(tr, WG.duration(s.elapsed_s), "num volatile");
      cell(tr, s.next_in_s === null ? "–" : s.next_in_s === 0 ? "due" : WG.duration(s.next_in_s), "num volatile");
      WG.badge(tr, s.freshness);
      WG.badge(tr, s.sharing);
    }, "no streams", 9);
  }

  function load() {
    return Promise.all([WG.call("GET", "/admin/api/matrix"), WG.call("GET", "/admin/api/scheduler")])
      .then(function (answers) {
        renderMatrix(answers[0].streams);
        renderScheduler(answers[1]);
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if ($("matrix")) WG.register(load);
  });
})();
