// worldgate admin console: the x402 payments panel. Sales, revenue and unsettled value by network and scheme (for
// the page's period), the sales still waiting for their settlement (with "flush batch settlement"), and a search by
// payer, stream, network, scheme, state and time whose rows open a payment's detail: its events and its journal.
// Uses console.js's WG; refreshed with every panel (a search too, once made).
(function () {
  "use strict";

  var WG = window.WG;
  var $ = WG.$;
  var cell = WG.cell;
  var query = null; // the last search's query string: refreshed with the page
  var chosen = null; // the payment whose detail is open

  function period() {
    var range = $("range").value;
    if (range === "all") return "";
    var start = new Date();
    start.setUTCDate(start.getUTCDate() - (parseInt(range, 10) - 1));
    return "?from=" + start.toISOString().slice(0, 10);
  }

  function renderSales(summary) {
    WG.rows("sales", summary.rows, function (tr, r) {
      tr.dataset.key = r.network + "|" + r.scheme_id;
      cell(tr, r.network, "key");
      cell(tr, r.scheme_id, "key");
      cell(tr, r.sales, "num sales");
      cell(tr, r.settled, "num");
      cell(tr, WG.atomicToUsdc(r.revenue_atomic), "num revenue");
      cell(tr, WG.atomicToUsdc(r.unsettled_atomic), "num unsettled");
      cell(tr, r.not_charged, "num");
    }, "no payments in this period", 7);
    var t = summary.totals;
    $("sales-total").textContent = t.sales + " sales, " + WG.atomicToUsdc(t.revenue_atomic) + " USDC settled, " +
      WG.atomicToUsdc(t.unsettled_atomic) + " USDC not final yet";
    var networks = $("pay-network");
    var schemes = $("pay-scheme");
    summary.rows.forEach(function (r) { add(networks, r.network); add(schemes, r.scheme_id); });
  }

  function add(select, value) {
    if (Array.prototype.some.call(select.options, function (o) { return o.value === value; })) return;
    var option = document.createElement("option");
    option.value = option.textContent = value;
    select.appendChild(option);
  }

  function renderPending(pending) {
    WG.rows("pending", pending.payments, function (tr, p) {
      tr.dataset.payment = p.id;
      cell(tr, p.id, "num");
      cell(tr, p.network, "key");
      cell(tr, p.scheme_id, "key");
      cell(tr, p.payer, "key");
      cell(tr, WG.atomicToUsdc(p.amount_atomic), "num");
      cell(tr, p.stream || p.resource, "key");
      WG.badge(tr, p.state);
      cell(tr, WG.duration(p.waiting_s), "num volatile");
    }, "nothing waiting: every sale served is settled", 8);
  }

  function flush(btn) {
    WG.act({
      ask: "Flush batch settlement now? Every accepted voucher is claimed on chain and the claims swept to payTo: " +
        "transactions the relayer pays gas for.",
      verb: "Flush", method: "POST", path: "/admin/api/batch/flush", button: btn, messageId: "pay-status",
      working: "claiming and sweeping…",
      done: function (r) {
        return "flushed: " + r.claims + " claim transaction(s) for " + r.channels + " channel(s), " +
          WG.atomicToUsdc(r.claimed_atomic) + " USDC claimed, " + WG.atomicToUsdc(r.settled_atomic) + " USDC swept";
      },
    });
  }

  function searchQuery() {
    var params = new URLSearchParams();
    ["payer", "stream", "network", "scheme", "state"].forEach(function (name) {
      var value = $("pay-" + name).value.trim();
      if (value) params.set(name, value);
    });
    if ($("pay-from").value) params.set("from", $("pay-from").value);
    if ($("pay-to").value) params.set("to", $("pay-to").value);
    params.set("limit", "50");
    return params.toString();
  }

  function search() {
    if (query === null) return Promise.resolve();
    return WG.call("GET", "/admin/api/payments?" + query).then(function (found) {
      WG.rows("pay-results", found.payments, function (tr, p) {
        tr.dataset.payment = p.id;
        tr.className = "clickable" + (String(p.id) === chosen ? " chosen" : "");
        cell(tr, p.id, "num");
        cell(tr, WG.stamp(p.created_at), "volatile");
        cell(tr, p.network, "key");
        cell(tr, p.scheme_id, "key");
        cell(tr, p.payer, "key");
        cell(tr, p.stream || p.resource, "key");
        cell(tr, WG.atomicToUsdc(p.amount_atomic), "num");
        WG.badge(tr, p.state);
        tr.addEventListener("click", function () { open(p.id); });
      }, "no payment matches", 8);
      $("pay-count").textContent = found.count + (found.count === 50 ? "+ (the newest 50)" : "") + " found";
    });
  }

  function open(id) {
    chosen = String(id);
    Array.prototype.forEach.call(document.querySelectorAll("#pay-results tbody tr"), function (tr) {
      tr.classList.toggle("chosen", tr.dataset.payment === chosen);
    });
    return WG.call("GET", "/admin/api/payments/" + id).then(function (p) {
      var box = $("pay-detail");
      box.hidden = false;
      box.dataset.payment = String(p.id);
      var list = $("pay-fields");
      while (list.firstChild) list.removeChild(list.firstChild);
      [["payment", p.id], ["key", p.payment_key], ["state", p.state], ["network", p.network],
        ["scheme", p.scheme_id], ["payer", p.payer], ["pay to", p.pay_to],
        ["amount", WG.atomicToUsdc(p.amount_atomic) + " USDC (" + p.amount_atomic + " atomic)"],
        ["resource", p.resource], ["tx", p.tx_hash], ["error", p.error_reason]].forEach(function (pair) {
        if (pair[1] === null || pair[1] === undefined) return;
        var dt = document.createElement("dt");
        var dd = document.createElement("dd");
        dt.textContent = pair[0];
        dd.textContent = String(pair[1]);
        list.appendChild(dt);
        list.appendChild(dd);
      });
      WG.rows("pay-events", p.events, function (tr, e) {
        cell(tr, WG.stamp(e.at), "volatile");
        cell(tr, e.from_state);
        WG.badge(tr, e.to_state);
        cell(tr, e.reason);
        cell(tr, e.tx_hash, "key");
      }, "no events", 5);
      WG.rows("pay-journal", p.journal, function (tr, line) {
        cell(tr, line.entry_id, "num");
        cell(tr, line.kind);
        cell(tr, line.account, "key");
        cell(tr, line.asset, "key");
        cell(tr, String(line.amount_atomic), "num amount");
      }, "nothing booked for it", 5);
    }).catch(function (error) { WG.say("pay-status", error.message, "error"); });
  }

  function load() {
    return Promise.all([
      WG.call("GET", "/admin/api/payments/summary" + period()),
      WG.call("GET", "/admin/api/payments/pending?limit=50"),
    ]).then(function (answers) {
      renderSales(answers[0]);
      renderPending(answers[1]);
      return search();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!$("payments")) return;
    WG.register(load);
    $("flush").addEventListener("click", function () { flush($("flush")); });
    $("pay-search").addEventListener("submit", function (event) {
      event.preventDefault();
      query = searchQuery();
      search().catch(function (error) { WG.say("pay-status", error.message, "error"); });
    });
    $("range").addEventListener("change", function () { WG.refresh(); });
  });
})();
