// worldgate admin console: the helpers every console panel shares (window.WG), and the panels that show the
// gateway itself: System Health, Connected Users (admin sessions, payers, live-feed subscribers), Banned Users
// (ban and unban), API v1 status, the MCP server's tools and the audit log. sources.js (matrix, scheduler) and payments.js use WG; all refresh every LIVE_MS
// while the page is visible, and at once on Refresh. Every change goes through the admin API with the session
// cookie (same origin), and a destructive one asks first (WG.confirm).
(function () {
  "use strict";

  var LIVE_MS = 5000;
  var TIMED = ["expires_at", "fetched_at", "took_s"]; // audit details that differ run to run
  var DECIMALS = 6;
  var panels = [];

  function $(id) { return document.getElementById(id); }

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

  function call(method, path, body) {
    var init = { method: method, credentials: "same-origin", headers: { accept: "application/json" } };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      return response.text().then(function (text) {
        var answer = {};
        try { answer = text ? parseJson(text) : {}; } catch (e) { /* not JSON */ }
        if (response.status === 401) throw new Error("your session has ended: reload the page to sign in again");
        if (!response.ok) throw new Error(answer.message || path.split("?")[0] + ": HTTP " + response.status);
        return answer;
      });
    });
  }

  function atomicToUsdc(atomic) {
    if (atomic === null || atomic === undefined) return "–";
    var n = BigInt(String(atomic));
    var negative = n < 0n;
    var digits = (negative ? -n : n).toString().padStart(DECIMALS + 1, "0");
    var text = digits.slice(0, -DECIMALS) + "." + digits.slice(-DECIMALS);
    return negative ? "-" + text : text;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    var s = Number(seconds);
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    if (s < 172800) return (s / 3600).toFixed(s < 36000 ? 1 : 0).replace(/\.0$/, "") + " h";
    return (s / 86400).toFixed(1).replace(/\.0$/, "") + " d";
  }

  function stamp(value) { // unix seconds or ISO text -> "2026-11-22 12:00:00Z"
    if (value === null || value === undefined || value === "") return "–";
    var ms = typeof value === "number" ? value * 1000 : Date.parse(value);
    if (isNaN(ms)) return String(value);
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + "Z";
  }

  function cell(row, text, className, title) {
    var td = document.createElement("td");
    var empty = text === null || text === undefined || text === "" || text === "–";
    td.textContent = empty ? "–" : String(text);
    // "volatile" marks what differs run to run (screenshots mask it); an empty cell does not
    if (className) td.className = empty ? className.replace(/\bvolatile\b/, "").trim() : className;
    if (title) td.title = title;
    row.appendChild(td);
    return td;
  }

  function badge(row, value, className) {
    var td = document.createElement("td");
    var span = document.createElement("span");
    var text = value === null || value === undefined ? "–" : String(value);
    span.textContent = text.replace(/_/g, " ");
    span.className = "badge b-" + text.replace(/[^a-z_]/gi, "");
    td.appendChild(span);
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  function button(label, className, onClick) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.className = "small " + (className || "");
    b.addEventListener("click", function () { onClick(b); });
    return b;
  }

  function rows(tableId, items, render, emptyText, columns) {
    var tbody = $(tableId).tBodies[0];
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    items.forEach(function (item) {
      var tr = document.createElement("tr");
      render(tr, item);
      tbody.appendChild(tr);
    });
    if (!items.length) {
      var tr = document.createElement("tr");
      cell(tr, emptyText, "empty").colSpan = columns;
      tbody.appendChild(tr);
    }
  }

  function say(id, text, state) {
    var el = $(id);
    el.textContent = text;
    el.dataset.state = state;
  }

  // A destructive action asks first, in the page's own dialog: resolves true when confirmed.
  function confirmAction(text, verb) {
    var dialog = $("confirm");
    $("confirm-text").textContent = text;
    $("confirm-ok").textContent = verb || "Confirm";
    return new Promise(function (resolve) {
      function done(answer) {
        $("confirm-ok").removeEventListener("click", yes);
        $("confirm-cancel").removeEventListener("click", no);
        dialog.removeEventListener("cancel", no);
        dialog.close();
        resolve(answer);
      }
      function yes() { done(true); }
      function no(event) { if (event) event.preventDefault(); done(false); }
      $("confirm-ok").addEventListener("click", yes);
      $("confirm-cancel").addEventListener("click", no);
      dialog.addEventListener("cancel", no);
      dialog.showModal();
    });
  }

  // An action: confirm (when `ask`), call the API, say what happened in `messageId`, then refresh every panel.
  function act(options) {
    var ask = options.ask ? confirmAction(options.ask, options.verb) : Promise.resolve(true);
    return ask.then(function (go) {
      if (!go) { say(options.messageId, "cancelled", "idle"); return null; }
      if (options.button) options.button.disabled = true;
      say(options.messageId, options.working || "working…", "busy");
      return call(options.method, options.path, options.body).then(function (answer) {
        say(options.messageId, options.done(answer), "ready");
        refreshAll();
        return answer;
      }).catch(function (error) {
        say(options.messageId, error.message, "error");
        return null;
      }).then(function (answer) {
        if (options.button) options.button.disabled = false;
        return answer;
      });
    });
  }

  function register(load) { panels.push(load); }

  var busy = false;
  function refreshAll() {
    if (busy) return Promise.resolve();
    busy = true;
    return Promise.all(panels.map(function (load) {
      return Promise.resolve().then(load).then(function () { return true; }, function (error) {
        document.body.dataset.live = "error";
        $("live").textContent = error.message;
        return false;
      });
    })).then(function (results) {
      if (results.every(Boolean)) {
        document.body.dataset.live = "ok";
        $("live").textContent = "live · updated " + new Date().toISOString().slice(11, 19) + " UTC";
      }
      busy = false;
    });
  }

  window.WG = {
    $: $, call: call, atomicToUsdc: atomicToUsdc, duration: duration, stamp: stamp, cell: cell, badge: badge,
    button: button, rows: rows, say: say, confirm: confirmAction, act: act, register: register, refresh: refreshAll,
  };

  // ---- System Health ----

  var system = null;

  function renderSystem(s) {
    system = s;
    var users = s.connected_users;
    $("sys-version").textContent = s.version;
    $("sys-mode").textContent = s.mode.chain + " · " + s.mode.upstreams;
    $("sys-users").textContent = String(users.total);
    $("sys-users-detail").textContent = users.admin_sessions + " admin, " + users.payers_last_hour + " payers (1 h)" +
      (users.live_subscribers === null ? "" : ", " + users.live_subscribers + " live");
    $("sys-sources").textContent = s.sources_fetched + " / " + s.sources_total;
    $("sys-points").textContent = String(s.total_points);
    $("sys-uptime").textContent = duration(s.uptime_s);
    var mode = $("sys-parts");
    while (mode.firstChild) mode.removeChild(mode.firstChild);
    var parts = s.mode.parts || {};
    var labels = [["database", parts.database], ["redis", parts.redis], ["chains", parts.chains],
      ["upstreams", s.mode.upstreams], ["facilitator", s.mode.facilitator],
      ["scheduler", s.mode.scheduler ? "on" : "off"], ["workers", s.mode.workers]];
    (s.mode.networks || []).forEach(function (n) { labels.push([n.name, n.kind]); });
    labels.forEach(function (pair) {
      if (pair[1] === undefined) return;
      var span = document.createElement("span");
      span.className = "badge b-" + String(pair[1]).replace(/[^a-z_]/gi, "");
      span.textContent = pair[0] + ": " + pair[1];
      mode.appendChild(span);
    });
    var flush = $("flush");
    if (flush) {
      flush.disabled = !s.actions.batch_flush.available;
      flush.title = s.actions.batch_flush.why || "";
    }
    $("ban-kind").querySelector("option[value=address]").disabled = !s.actions.address_bans.available;
    $("ban-address-note").textContent = s.actions.address_bans.available ? "" :
      "Address bans: " + s.actions.address_bans.why + " (payer bans work).";
    if (!s.actions.live_feeds.available) $("live-note").textContent = s.actions.live_feeds.why;
  }

  // ---- Connected Users, Banned Users ----

  function renderUsers(u) {
    var sessions = u.admin_sessions.slice().sort(function (a, b) { // a stable order, whoever polled last
      return (a.via + a.subject + a.first_seen_at).localeCompare(b.via + b.subject + b.first_seen_at);
    });
    rows("sessions", sessions, function (tr, s) {
      tr.dataset.subject = s.subject;
      tr.dataset.via = s.via;
      cell(tr, s.subject, "key");
      cell(tr, s.via);
      cell(tr, s.client);
      cell(tr, stamp(s.first_seen_at), "volatile");
      cell(tr, stamp(s.last_seen_at), "volatile");
      cell(tr, stamp(s.expires_at), "volatile");
    }, "no admin session in the last " + duration(u.active_s), 6);
    rows("payers", u.payers, function (tr, p) {
      tr.dataset.payer = p.payer;
      cell(tr, p.payer, "key");
      cell(tr, p.network);
      cell(tr, p.payments, "num");
      cell(tr, p.settled, "num");
      cell(tr, atomicToUsdc(p.settled_atomic), "num");
      cell(tr, stamp(p.last_seen_at), "volatile");
      var td = document.createElement("td");
      td.className = "actions";
      td.appendChild(button("Ban…", "ghost ban-payer", function () {
        $("ban-kind").value = "payer";
        $("ban-value").value = p.payer;
        $("ban-reason").focus();
      }));
      tr.appendChild(td);
    }, "no payer in the last hour", 7);
    rows("live-subscribers", u.live_subscribers.feeds, function (tr, f) {
      tr.dataset.feed = f.id;
      cell(tr, f.id, "key");
      cell(tr, f.subscribers, "num");
      cell(tr, f.subscribers_here, "num");
      cell(tr, f.keep_alive ? "yes" : "no");
      cell(tr, f.feed_status);
    }, u.live_subscribers.available ? "no live-feed subscriber" : u.live_subscribers.why, 5);
  }

  function renderBans(b) {
    var all = b.bans.map(function (x) { return Object.assign({ value: x.payer }, x); })
      .concat(b.address_bans.map(function (x) { return Object.assign({ value: x.address }, x); }));
    rows("bans", all, function (tr, ban) {
      tr.dataset.ban = ban.value;
      cell(tr, ban.kind);
      cell(tr, ban.value, "key");
      cell(tr, ban.reason);
      cell(tr, ban.created_by);
      cell(tr, stamp(ban.created_at), "volatile");
      cell(tr, ban.expires_at ? stamp(ban.expires_at) : "until lifted", ban.expires_at ? "volatile" : null);
      var td = document.createElement("td");
      td.className = "actions";
      td.appendChild(button("Unban", "ghost unban", function (btn) {
        act({
          ask: "Lift the ban on " + ban.kind + " " + ban.value + "? It may pay (and be served) again at once.",
          verb: "Unban", method: "DELETE", path: "/admin/api/bans/" + encodeURIComponent(ban.value),
          button: btn, messageId: "ban-status", done: function () { return ban.value + " unbanned"; },
        });
      }));
      tr.appendChild(td);
    }, "nobody is banned", 7);
  }

  function submitBan(event) {
    event.preventDefault();
    var kind = $("ban-kind").value;
    var value = $("ban-value").value.trim();
    var reason = $("ban-reason").value.trim();
    if (!value || !reason) {
      say("ban-status", "name the " + kind + " and give a reason", "error");
      return;
    }
    var body = { reason: reason };
    body[kind] = value;
    var expiry = $("ban-expiry").value;
    if (expiry) body.expires_in_s = parseInt(expiry, 10);
    var until = expiry ? "for " + $("ban-expiry").selectedOptions[0].textContent : "until lifted";
    act({
      ask: "Ban " + kind + " " + value + " " + until + "? Its requests are refused at once, on every worker.",
      verb: "Ban", method: "POST", path: "/admin/api/bans", body: body, button: $("ban-submit"),
      messageId: "ban-status", done: function (ban) { return ban.kind + " " + (ban.payer || ban.address) + " banned"; },
    }).then(function (ban) {
      if (ban) { $("ban-value").value = ""; $("ban-reason").value = ""; }
    });
  }

  // ---- API v1 status, MCP server, audit log ----

  function renderHealth(h, counts) {
    $("api-verdict").textContent = h.status;
    $("api-verdict").className = "badge b-" + (h.status === "ok" ? "healthy" : h.status);
    var checks = Object.keys(h.checks || {}).map(function (k) { return k + ": " + h.checks[k]; });
    $("api-checks").textContent = checks.join(" · ") + " · " + h.streams + " streams (" + h.shared + " on sale)";
    rows("api-routes", counts.routes, function (tr, r) {
      tr.dataset.route = r.route;
      cell(tr, r.route, "key");
      cell(tr, r.requests, "num");
      cell(tr, r["2xx"] || 0, "num");
      cell(tr, r["402"] || 0, "num");
      cell(tr, r["4xx"] || 0, "num");
      cell(tr, r["5xx"] || 0, "num");
      tr.classList.add("volatile"); // counts since this worker started: they differ run to run
    }, "no request yet since " + stamp(counts.since), 6);
  }

  var mcpLoaded = false;
  function loadMcp() { // the MCP server as a client sees it: tools/list over its own transport
    if (mcpLoaded) return Promise.resolve();
    var request = { jsonrpc: "2.0", id: 1, method: "tools/list" };
    return fetch("/mcp", {
      method: "POST", credentials: "same-origin", body: JSON.stringify(request),
      headers: { accept: "application/json, text/event-stream", "content-type": "application/json" },
    }).then(function (response) {
      if (!response.ok) throw new Error("/mcp: HTTP " + response.status);
      return response.json();
    }).then(function (answer) {
      var tools = answer.result.tools;
      rows("mcp-tools", tools, function (tr, t) {
        var paid = t._meta && t._meta["worldgate/paid"];
        tr.dataset.tool = t.name;
        cell(tr, t.name, "key");
        badge(tr, paid ? "paid" : "free");
        cell(tr, t.description, "detail");
      }, "no tools", 3);
      $("mcp-count").textContent = tools.length + " tools at /mcp (streamable HTTP, stateless)";
      mcpLoaded = true;
    });
  }

  function renderAudit(a) {
    rows("audit", a.entries, function (tr, e) {
      tr.dataset.action = e.action;
      cell(tr, e.id, "num");
      cell(tr, stamp(e.at), "volatile");
      cell(tr, e.actor, "key");
      cell(tr, e.action);
      cell(tr, e.target, "key");
      var shown = Object.keys(e.detail || {}).filter(function (k) {
        var v = e.detail[k];
        return v !== null && !(Array.isArray(v) && !v.length);
      });
      var detail = shown.map(function (k) {
        return k + "=" + (typeof e.detail[k] === "object" ? JSON.stringify(e.detail[k]) : e.detail[k]);
      });
      // times and timings differ run to run: marked, as times are, for screenshots to mask
      var timed = shown.some(function (k) { return TIMED.indexOf(k) >= 0; });
      cell(tr, detail.join(" "), timed ? "detail volatile" : "detail");
    }, "no admin action yet", 6);
  }

  function load() {
    var filter = $("audit-filter").value;
    return Promise.all([
      call("GET", "/admin/api/system"),
      call("GET", "/admin/api/users"),
      call("GET", "/admin/api/bans"),
      call("GET", "/admin/api/api-status"),
      fetch("/v1/health", { headers: { accept: "application/json" } }).then(function (r) { return r.json(); }),
      call("GET", "/admin/api/audit?limit=50" + (filter ? "&action=" + encodeURIComponent(filter) : "")),
    ]).then(function (answers) {
      renderSystem(answers[0]);
      renderUsers(answers[1]);
      renderBans(answers[2]);
      renderHealth(answers[4], answers[3]);
      renderAudit(answers[5]);
      return loadMcp();
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!$("system")) return;
    register(load);
    $("ban-form").addEventListener("submit", submitBan);
    $("audit-filter").addEventListener("change", function () { refreshAll(); });
    $("refresh").addEventListener("click", function () { refreshAll(); });
    setInterval(function () { if (!document.hidden) refreshAll(); }, LIVE_MS);
    setTimeout(refreshAll, 0); // after every panel's script registered its load
  });

  window.WG.system = function () { return system; };
})();
