// worldgate admin dashboard: the reconcile findings table, with acknowledge and close (each with a note; closing
// asks first), and "run reconcile" (asks first: it may move payments to their final state). Apart from
// dashboard.js, which draws the charts; both load with the page and refresh together.
(function () {
  "use strict";

  function $(id) {
    return document.getElementById(id);
  }

  function call(method, path, body) {
    var init = { method: method, credentials: "same-origin", headers: { accept: "application/json" } };
    if (body !== undefined) {
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (answer) {
        if (!response.ok) throw new Error(answer.message || "HTTP " + response.status);
        return answer;
      });
    });
  }

  function cell(row, text, className, title) {
    var td = document.createElement("td");
    td.textContent = text === null || text === undefined || text === "" ? "–" : String(text);
    if (className) td.className = className;
    if (title) td.title = title;
    row.appendChild(td);
    return td;
  }

  function stamp(iso) {
    return iso ? String(iso).replace("T", " ").slice(0, 19) + "Z" : "–";
  }

  function setMessage(text, state) {
    var el = $("findings-status");
    el.textContent = text;
    el.dataset.state = state;
  }

  function button(label, action, id, note) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.className = "finding-" + action;
    b.addEventListener("click", function () {
      if (!note.value.trim()) {
        setMessage("write a note first: why it is " + (action === "ack" ? "acknowledged" : "closed"), "error");
        note.focus();
        return;
      }
      var ask = action === "close" ? window.WG.confirm("Close finding " + id + "? A closed finding stays closed, " +
        "even when reconcile sees it again.", "Close") : Promise.resolve(true);
      ask.then(function (go) {
        if (!go) return;
        b.disabled = true;
        call("POST", "/admin/api/findings/" + id + "/" + action, { note: note.value.trim() }).then(function (f) {
          setMessage("finding " + f.id + " " + f.state, "ready");
          load();
        }).catch(function (error) {
          b.disabled = false;
          setMessage(error.message, "error");
        });
      });
    });
    return b;
  }

  function render(findings) {
    var tbody = $("findings").tBodies[0];
    while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
    var order = { open: 0, acknowledged: 1, closed: 2 };
    findings.sort(function (a, b) { return order[a.state] - order[b.state] || a.id - b.id; });
    findings.forEach(function (f) {
      var tr = document.createElement("tr");
      tr.dataset.finding = f.id;
      tr.dataset.state = f.state;
      cell(tr, f.id, "num");
      cell(tr, f.state.replace(/_/g, " "), "state b-" + f.state);
      cell(tr, f.kind.replace(/_/g, " "));
      cell(tr, f.payment_id, "num");
      cell(tr, f.network);
      cell(tr, stamp(f.first_seen_at));
      cell(tr, f.detail, "detail");
      cell(tr, f.note, "note", f.closed_by || f.acknowledged_by || null);
      var actions = document.createElement("td");
      actions.className = "actions";
      if (f.state !== "closed") {
        var note = document.createElement("input");
        note.type = "text";
        note.className = "finding-note";
        note.placeholder = "note";
        note.maxLength = 2000;
        actions.appendChild(note);
        if (f.state === "open") actions.appendChild(button("acknowledge", "ack", f.id, note));
        actions.appendChild(button("close", "close", f.id, note));
      }
      tr.appendChild(actions);
      tbody.appendChild(tr);
    });
    if (!findings.length) {
      var empty = document.createElement("tr");
      cell(empty, "no findings: the books agree with the chains", "empty").colSpan = 9;
      tbody.appendChild(empty);
    }
  }

  function load() {
    return call("GET", "/admin/api/findings?limit=200").then(function (answer) {
      render(answer.findings);
    }).catch(function (error) {
      setMessage(error.message, "error");
    });
  }

  function runReconcile() {
    window.WG.act({
      ask: "Run reconcile now? Every open payment is checked against its chain: ones abandoned are closed, ones " +
        "the chain settled are booked, and disagreements become findings.",
      verb: "Run reconcile", method: "POST", path: "/admin/api/reconcile", button: $("run-reconcile"),
      messageId: "findings-status", working: "reconciling…",
      done: function (r) {
        if (r.skipped) return "not run: " + r.skipped;
        return "reconcile run " + r.run_id + ": " + r.checked + " checked, " + r.resolved + " resolved, " +
          r.flagged + " flagged" + (r.errors && r.errors.length ? "; errors: " + r.errors.join("; ") : "");
      },
    }).then(function (run) { if (run) load(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("refresh").addEventListener("click", load);
    $("run-reconcile").addEventListener("click", runReconcile);
    load();
  });
})();
