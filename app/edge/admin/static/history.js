// worldgate admin dashboard: the Time Machine panel. Reads /admin/api/history* with the session cookie:
// coverage per recorded stream, a timeline of the chosen stream's snapshots (uPlot, as the other charts) with a
// scrubber that shows the snapshot in force at the chosen moment, and a "backfill" cell in the source table.
(function () {
  "use strict";

  var CHART_HEIGHT = 200;
  var MARK_COLOR = "#e8590c";
  var LINE_COLOR = "#1c7ed6";
  var overview = {};   // stream id -> its coverage row
  var chart = null;
  var timeline = [];   // [[unix seconds, records], ...]
  var pending = null;

  function $(id) { return document.getElementById(id); }

  function api(path) {
    return fetch(path, { credentials: "same-origin", headers: { accept: "application/json" } }).then(
      function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(path.split("?")[0] + ": " + (body.message || "HTTP " + response.status));
          return body;
        });
      });
  }

  function stamp(value) {  // ISO text or unix seconds -> "2024-05-21 23:00:00Z"
    if (value === null || value === undefined) return "–";
    var date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return date.toISOString().replace("T", " ").replace(/\.\d{3}Z$/, "Z");
  }

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function backfillText(row) {
    var b = row && row.backfill;
    if (!b) return "not kept upstream";
    var text = b.days_done + " of " + b.max_days + " days";
    return b.last_day ? text + " (to " + b.last_day + ")" : text;
  }

  // ---- the source table's backfill column (the table is drawn by dashboard.js) ----

  function fillBackfillColumn() {
    var rows = document.querySelectorAll("#matrix tbody tr[data-stream]");
    Array.prototype.forEach.call(rows, function (tr) {
      var td = tr.querySelector("td.backfill") || cell(tr, "", "backfill");
      var row = overview[tr.dataset.stream];
      td.textContent = row ? backfillText(row) : "–";
    });
  }

  // ---- coverage ----

  function renderCoverage(streams) {
    var tbody = $("tm-coverage").tBodies[0];
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    overview = {};
    streams.forEach(function (s) {
      overview[s.id] = s;
      var tr = document.createElement("tr");
      tr.dataset.stream = s.id;
      cell(tr, s.id, "key");
      cell(tr, stamp(s.earliest));
      cell(tr, stamp(s.latest));
      cell(tr, s.count, "num count");
      cell(tr, s.gap_count, "num gaps");
      cell(tr, backfillText(s), "backfill");
      tbody.appendChild(tr);
    });
    var select = $("tm-stream");
    var chosen = select.value;
    while (select.firstChild) select.removeChild(select.firstChild);
    var recorded = streams.filter(function (s) { return s.count > 0; });
    recorded.forEach(function (s) {
      var option = document.createElement("option");
      option.value = s.id;
      option.textContent = s.id + " (" + s.count + ")";
      select.appendChild(option);
    });
    fillBackfillColumn();
    if (!recorded.length) {
      $("tm-summary").textContent = "Nothing recorded yet: the scheduler records every fetch; " +
        "`worldgate backfill STREAM --days N` fills the past.";
      return null;
    }
    select.value = recorded.some(function (s) { return s.id === chosen; }) ? chosen : recorded[0].id;
    return select.value;
  }

  // ---- the timeline and the scrubber ----

  function markLine(u) {
    var at = Number($("tm-scrub").value);
    if (!timeline.length) return;
    var x = u.valToPos(at, "x", true);
    var ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = MARK_COLOR;
    ctx.lineWidth = 2 * devicePixelRatio;
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.restore();
  }

  function drawTimeline(stream, points) {
    timeline = points;
    var el = $("tm-chart");
    if (chart) { chart.destroy(); chart = null; }
    el.dataset.points = String(points.length);
    el.dataset.stream = stream;
    if (!points.length) return;
    var xs = points.map(function (p) { return p[0]; });
    var ys = points.map(function (p) { return p[1]; });
    chart = new uPlot({
      width: Math.max(el.clientWidth, 300),
      height: CHART_HEIGHT,
      scales: {
        x: { time: true, range: function (u, min, max) { return min === max ? [min - 3600, max + 3600] : [min, max]; } },
        y: { range: function (u, min, max) { return [0, Math.max(max, 1) * 1.1]; } },
      },
      series: [
        { label: "snapshot (UTC)", value: function (u, v) { return v == null ? "–" : stamp(v); } },
        { label: "records", stroke: LINE_COLOR, width: 1, points: { show: true, size: 5, fill: LINE_COLOR } },
      ],
      axes: [{}, { label: "records" }],
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      hooks: { draw: [markLine] },
    }, [xs, ys], el);
    var scrub = $("tm-scrub");
    scrub.min = String(Math.floor(xs[0]));
    scrub.max = String(Math.ceil(xs[xs.length - 1]));
    scrub.value = scrub.max;
    showMoment();
  }

  function showMoment() {
    var at = Number($("tm-scrub").value);
    $("tm-moment").textContent = stamp(at);
    if (chart) chart.redraw(false, false);
    clearTimeout(pending);
    pending = setTimeout(function () { loadSnapshot(at); }, 120);
  }

  function loadSnapshot(at) {
    var stream = $("tm-stream").value;
    if (!stream) return;
    api("/admin/api/history/" + encodeURIComponent(stream) + "/at?t=" + at).then(function (snap) {
      if (Number($("tm-scrub").value) !== at || $("tm-stream").value !== stream) return;  // moved on since
      var box = $("tm-snapshot");
      box.dataset.t = snap.t;
      box.dataset.count = String(snap.count);
      $("tm-summary").textContent = "In force at " + stamp(at) + ": the snapshot of " + stamp(snap.t) +
        " (observed " + stamp(snap.observed_at) + ", seen until " + stamp(snap.seen_until) + "), " +
        snap.count + " record" + (snap.count === 1 ? "" : "s") + (snap.count > snap.records.length ?
        ", the first " + snap.records.length + " shown" : "");
      var tbody = $("tm-records").tBodies[0];
      while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
      snap.records.forEach(function (r) {
        var tr = document.createElement("tr");
        cell(tr, stamp(r.observed_at));
        cell(tr, r.lat, "num");
        cell(tr, r.lon, "num");
        cell(tr, JSON.stringify(r.fields), "key");
        tbody.appendChild(tr);
      });
    }).catch(function (error) {
      $("tm-summary").textContent = error.message;
    });
  }

  function loadTimeline(stream) {
    if (!stream) return Promise.resolve();
    return api("/admin/api/history/" + encodeURIComponent(stream) + "/timeline").then(function (body) {
      drawTimeline(stream, body.points);
    });
  }

  function load() {
    return api("/admin/api/history").then(function (body) {
      return loadTimeline(renderCoverage(body.streams));
    }).catch(function (error) {
      $("tm-summary").textContent = error.message;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (typeof uPlot === "undefined" || !$("time-machine")) return;  // dashboard.js says why
    $("tm-stream").addEventListener("change", function () { loadTimeline($("tm-stream").value); });
    $("tm-scrub").addEventListener("input", showMoment);
    $("refresh").addEventListener("click", load);
    new MutationObserver(fillBackfillColumn).observe($("matrix").tBodies[0], { childList: true });
    window.addEventListener("resize", function () {
      if (chart) chart.setSize({ width: Math.max($("tm-chart").clientWidth, 300), height: CHART_HEIGHT });
    });
    load();
  });
})();
