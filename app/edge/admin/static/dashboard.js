// worldgate admin dashboard: reads /admin/api/reports with the session cookie and draws uPlot charts (the
// console's panels are console.js, sources.js and payments.js).
//
// Amounts arrive as integer atomic units (USDC has 6 decimals) plus the API's exact `revenue_usdc`
// strings. Text shows those strings (or BigInt-formatted atomic units); floats are used only to
// place bars on a chart, never summed into a figure shown as exact.
(function () {
  "use strict";

  var DECIMALS = 6;
  var OUTCOMES = ["settled", "pending", "failed", "released", "in_flight"];
  var OUTCOME_LABELS = {
    settled: "settled", pending: "pending", failed: "failed", released: "released", in_flight: "in flight",
  };
  var OUTCOME_COLORS = {
    settled: "#2f9e44", pending: "#f08c00", failed: "#e03131", released: "#868e96", in_flight: "#1c7ed6",
  };
  var NETWORK_NAMES = {
    "eip155:8453": "Base",
    "eip155:84532": "Base Sepolia",
    "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp": "Solana",
    "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1": "Solana devnet",
  };
  var REVENUE_COLOR = "#5f3dc4";
  var CHART_HEIGHT = 240;
  var REFRESH_MS = 60000;

  var charts = {};
  var loading = false;

  // ---- helpers ------------------------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  // JSON with integers beyond 2^53 kept exact, as their source text (where the browser offers it).
  function parseJson(text) {
    return JSON.parse(text, function (key, value, context) {
      if (typeof value === "number" && Number.isInteger(value) && !Number.isSafeInteger(value) &&
          context && typeof context.source === "string") {
        return context.source;
      }
      return value;
    });
  }

  function api(path) {
    return fetch(path, { credentials: "same-origin", headers: { accept: "application/json" } }).then(
      function (response) {
        return response.text().then(function (text) {
          if (response.status === 401) {
            throw new Error("your session has ended: reload the page to sign in again");
          }
          if (!response.ok) {
            var message = "HTTP " + response.status;
            try { message = parseJson(text).message || message; } catch (e) { /* not JSON */ }
            throw new Error(path.split("?")[0] + ": " + message);
          }
          return parseJson(text);
        });
      });
  }

  // For chart geometry only.
  function atomicToNumber(atomic) {
    return Number(atomic) / Math.pow(10, DECIMALS);
  }

  function usdcAxis(u, splits) {
    return splits.map(function (v) { return v == null ? "" : trimZeros(v.toFixed(DECIMALS)); });
  }

  function trimZeros(text) {
    return text.indexOf(".") < 0 ? text : text.replace(/0+$/, "").replace(/\.$/, "");
  }

  function pad2(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function dayKey(date) {
    return date.getUTCFullYear() + "-" + pad2(date.getUTCMonth() + 1) + "-" + pad2(date.getUTCDate());
  }

  function hourKey(date) {
    return dayKey(date) + "T" + pad2(date.getUTCHours()) + ":00Z";
  }

  function dayStart(key) { // "2026-11-22" -> epoch seconds at 00:00 UTC
    return Date.UTC(+key.slice(0, 4), +key.slice(5, 7) - 1, +key.slice(8, 10)) / 1000;
  }

  function cell(row, text, className, title) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined || text === "" ? "–" : String(text);
    if (className) td.className = className;
    if (title) td.title = title;
    row.appendChild(td);
    return td;
  }

  function clear(tbody) {
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
  }

  function setStatus(text, state) {
    $("status").textContent = text;
    document.body.dataset.state = state;
  }

  // ---- charts -------------------------------------------------------------------------------

  function width(el) {
    return Math.max(280, Math.floor(el.getBoundingClientRect().width));
  }

  function draw(id, options, data) {
    var el = $(id);
    if (charts[id]) charts[id].destroy();
    while (el.firstChild) el.removeChild(el.firstChild);
    options.width = width(el);
    options.height = CHART_HEIGHT;
    charts[id] = new uPlot(options, data, el);
    el.dataset.points = String(data[0].length);
  }

  function utcTz(ts) {
    return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");
  }

  function fromZero(u, min, max) {
    return [0, max > 0 ? max * 1.1 : 1];
  }

  function bars(size) {
    return uPlot.paths.bars({ size: [size, 60], gap: 1 });
  }

  function revenueSeries() {
    return {
      label: "revenue (USDC)",
      stroke: REVENUE_COLOR,
      fill: REVENUE_COLOR + "cc",
      width: 0,
      paths: bars(0.7),
      points: { show: false },
      value: function (u, v) { return v == null ? "–" : v.toFixed(DECIMALS); },
    };
  }

  // A time axis with half a bucket of room either side, so the first and last bars show whole.
  function timeScale(step) {
    return {
      time: true,
      range: function (u, min, max) { return [min - step / 2, max + step / 2]; },
    };
  }

  function timeChart(id, stamps, values, step) {
    draw(id, {
      tzDate: utcTz,
      scales: { x: timeScale(step), y: { range: fromZero } },
      axes: [{}, { values: usdcAxis, size: 70 }],
      series: [{}, revenueSeries()],
    }, [stamps, values]);
  }

  function categoryChart(id, labels, values) {
    var many = labels.length > 4;
    draw(id, {
      scales: {
        x: { time: false, range: function () { return [-0.5, Math.max(labels.length, 1) - 0.5]; } },
        y: { range: fromZero },
      },
      axes: [
        {
          splits: function () { return labels.map(function (_, i) { return i; }); },
          values: function (u, splits) { return splits.map(function (i) { return labels[i] || ""; }); },
          rotate: many ? -30 : 0,
          size: many ? 90 : 40,
          grid: { show: false },
        },
        { values: usdcAxis, size: 70 },
      ],
      series: [
        { label: "", value: function (u, i) { return i == null ? "–" : labels[i] || ""; } },
        revenueSeries(),
      ],
    }, [labels.map(function (_, i) { return i; }), values]);
  }

  // Stacked bars: each series is drawn at its cumulative height, tallest first, so the smaller
  // ones paint over it; the legend shows each outcome's own count.
  function outcomesChart(id, stamps, counts) {
    var cumulative = [];
    var running = stamps.map(function () { return 0; });
    OUTCOMES.forEach(function (name) {
      running = running.map(function (v, i) { return v + counts[name][i]; });
      cumulative.push(running.slice());
    });
    var series = [{}];
    var data = [stamps];
    for (var k = OUTCOMES.length - 1; k >= 0; k--) {
      (function (name) {
        series.push({
          label: OUTCOME_LABELS[name],
          stroke: OUTCOME_COLORS[name],
          fill: OUTCOME_COLORS[name],
          width: 0,
          paths: bars(0.7),
          points: { show: false },
          value: function (u, v, si, idx) { return idx == null ? "–" : String(counts[name][idx]); },
        });
      })(OUTCOMES[k]);
      data.push(cumulative[k]);
    }
    draw(id, {
      tzDate: utcTz,
      scales: { x: timeScale(86400), y: { range: fromZero } },
      axes: [{}, { size: 50 }],
      series: series,
    }, data);
  }

  // ---- data ---------------------------------------------------------------------------------

  function windowStart(range) {
    if (range === "all") return null;
    var days = parseInt(range, 10);
    var start = new Date();
    start.setUTCDate(start.getUTCDate() - (days - 1));
    return dayKey(start);
  }

  function dayAxis(rows, since) {
    var today = dayKey(new Date());
    var first = since || (rows.length ? rows[0].key : today);
    if (first > today) first = today;
    var stamps = [];
    for (var t = dayStart(first); t <= dayStart(today); t += 86400) stamps.push(t);
    return stamps;
  }

  function renderDays(report, since) {
    var byKey = {};
    report.rows.forEach(function (row) { byKey[row.key] = row; });
    var stamps = dayAxis(report.rows, since);
    var revenue = [];
    var counts = {};
    OUTCOMES.forEach(function (name) { counts[name] = []; });
    stamps.forEach(function (t) {
      var row = byKey[dayKey(new Date(t * 1000))];
      revenue.push(row ? atomicToNumber(row.revenue_atomic) : 0);
      OUTCOMES.forEach(function (name) { counts[name].push(row ? Number(row[name]) : 0); });
    });
    timeChart("chart-day", stamps, revenue, 86400);
    outcomesChart("chart-outcomes", stamps, counts);

    var totals = report.totals;
    $("total-revenue").textContent = totals.revenue_usdc;
    $("total-revenue-atomic").textContent = String(totals.revenue_atomic);
    OUTCOMES.forEach(function (name) { $("count-" + name).textContent = String(totals[name]); });
  }

  function renderHours(report, start) {
    var byKey = {};
    report.rows.forEach(function (row) { byKey[row.key] = row; });
    var stamps = [];
    var revenue = [];
    for (var i = 0; i < 48; i++) {
      var t = start.getTime() / 1000 + i * 3600;
      var row = byKey[hourKey(new Date(t * 1000))];
      stamps.push(t);
      revenue.push(row ? atomicToNumber(row.revenue_atomic) : 0);
    }
    timeChart("chart-hour", stamps, revenue, 3600);
  }

  function renderGroup(report, chartId, tableId, shortLabel, withGas) {
    var rows = report.rows.slice().sort(function (a, b) {
      var d = BigInt(String(b.revenue_atomic)) - BigInt(String(a.revenue_atomic));
      return d > 0n ? 1 : d < 0n ? -1 : a.key < b.key ? -1 : 1;
    });
    categoryChart(chartId, rows.map(function (r) { return shortLabel(r.key); }),
      rows.map(function (r) { return atomicToNumber(r.revenue_atomic); }));
    var tbody = $(tableId).tBodies[0];
    clear(tbody);
    rows.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.dataset.key = r.key;
      var key = cell(tr, shortLabel(r.key), "key", r.key);
      if (shortLabel(r.key) !== r.key) {
        var full = document.createElement("div");
        full.className = "full-key";
        full.textContent = r.key;
        key.appendChild(full);
      }
      cell(tr, r.settled, "num settled");
      cell(tr, r.pending, "num pending");
      cell(tr, r.failed, "num failed");
      cell(tr, r.revenue_usdc, "num revenue");
      if (withGas) {  // a network row: its own gas, in its own unit (never summed across networks)
        var gas = (r.gas || {})[r.key];
        cell(tr, gas ? gas.amount_atomic + " " + gas.unit : "0", "num gas");
      }
      tbody.appendChild(tr);
    });
    if (!rows.length) {
      var empty = document.createElement("tr");
      cell(empty, "no payments in this period", "empty").colSpan = withGas ? 6 : 5;
      tbody.appendChild(empty);
    }
  }

  function networkLabel(key) {
    return NETWORK_NAMES[key] || (key.length > 18 ? key.slice(0, 16) + "…" : key);
  }

  function streamLabel(key) {
    return key.length > 28 ? key.slice(0, 26) + "…" : key;
  }

  function load() {
    if (loading) return;
    loading = true;
    setStatus("loading…", "loading");
    var range = $("range").value;
    var since = windowStart(range);
    var period = since ? "&from=" + encodeURIComponent(since) : "";
    var hourStart = new Date();
    hourStart.setUTCMinutes(0, 0, 0);
    hourStart = new Date(hourStart.getTime() - 47 * 3600 * 1000);
    var hourWindow = "&from=" + encodeURIComponent(hourStart.toISOString().replace(/\.\d{3}Z$/, "Z"));
    Promise.all([
      api("/admin/api/reports?group_by=day&format=json" + period),
      api("/admin/api/reports?group_by=hour&format=json" + hourWindow),
      api("/admin/api/reports?group_by=stream&format=json" + period),
      api("/admin/api/reports?group_by=network&format=json" + period),
    ]).then(function (answers) {
      renderDays(answers[0], since);
      renderHours(answers[1], hourStart);
      renderGroup(answers[2], "chart-stream", "table-stream", streamLabel, false);
      renderGroup(answers[3], "chart-network", "table-network", networkLabel, true);
      setStatus("updated " + new Date().toISOString().slice(11, 19) + " UTC", "ready");
    }).catch(function (error) {
      setStatus(error.message, "error");
    }).then(function () {
      loading = false;
    });
  }

  function resize() {
    Object.keys(charts).forEach(function (id) {
      charts[id].setSize({ width: width($(id)), height: CHART_HEIGHT });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (typeof uPlot === "undefined") {
      setStatus("the chart library did not load (is uPlot installed? run `make install`)", "error");
      return;
    }
    $("range").addEventListener("change", load);
    $("refresh").addEventListener("click", load);
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(resize, 150);
    });
    setInterval(function () { if (!document.hidden) load(); }, REFRESH_MS);
    load();
  });
})();
