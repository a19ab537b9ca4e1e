// Live list page glue for htmx's ws extension, plus relative times.
//
// The server sends frames of <tr id="demand-N"> rows (newest first). We take over the swap so we
// can (1) drop rows the page already shows — a resume replay and a live batch may overlap —,
// (2) insert new ones at the top in id order, (3) keep the table bounded. Each time the socket
// opens (first connect and every reconnect) we ask for everything newer than our newest row, so a
// dropped connection leaves no gap.
(function () {
  "use strict";

  function rowsBody() { return document.getElementById("demand-rows"); }

  function newestShownId() {
    var newest = 0;
    var body = rowsBody();
    if (!body) return 0;
    body.querySelectorAll("tr[data-id]").forEach(function (row) {
      var id = parseInt(row.dataset.id, 10);
      if (id > newest) newest = id;
    });
    return newest;
  }

  function setLive(state, text) {
    var indicator = document.getElementById("live-indicator");
    if (!indicator) return;
    indicator.classList.remove("connected", "disconnected");
    indicator.classList.add(state);
    indicator.querySelector(".label").textContent = text;
  }

  function insertRows(html) {
    var body = rowsBody();
    if (!body) return;
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    var incoming = template.content.querySelectorAll("tr[data-id]");
    var fresh = [];
    incoming.forEach(function (row) {
      if (!document.getElementById(row.id)) fresh.push(row);
    });
    if (!fresh.length) return;
    fresh.sort(function (a, b) { return parseInt(b.dataset.id, 10) - parseInt(a.dataset.id, 10); });
    // Place each row before the first shown row with a smaller id: newest first, whatever the
    // order batches from several consumers arrive in.
    fresh.forEach(function (row) {
      var id = parseInt(row.dataset.id, 10);
      var before = null;
      var rows = body.querySelectorAll("tr[data-id]");
      for (var i = 0; i < rows.length; i++) {
        if (parseInt(rows[i].dataset.id, 10) < id) { before = rows[i]; break; }
      }
      body.insertBefore(row, before);
      if (window.htmx) window.htmx.process(row);
    });
    var empty = document.getElementById("demand-empty");
    if (empty) empty.remove();
    var container = document.getElementById("demand-table");
    var max = parseInt((container && container.dataset.liveMaxRows) || "200", 10);
    var all = body.querySelectorAll("tr[data-id]");
    for (var j = max; j < all.length; j++) all[j].remove();
    refreshTimes(body);
  }

  var socket = null; // the list page's socket, for resume requests

  document.addEventListener("htmx:wsOpen", function (event) {
    socket = event.detail.socketWrapper;
    setLive("connected", document.documentElement.lang.indexOf("zh") === 0 ? "实时" : "Live");
    if (rowsBody()) event.detail.socketWrapper.send(JSON.stringify({ resume_after: newestShownId() }));
  });

  document.addEventListener("htmx:wsClose", function (event) {
    setLive("disconnected", document.documentElement.lang.indexOf("zh") === 0 ? "重新连接中…" : "Reconnecting…");
    // The extension retries only abnormal closes (1006, 1011-1013). A server that shuts down
    // cleanly (a daphne restart or deploy) closes with 1000/1001: retry those too, with jitter.
    var code = event.detail.event && event.detail.event.code;
    var elt = event.detail.elt || event.target;
    if ((code === 1000 || code === 1001) && document.body.contains(elt)) {
      setTimeout(function () { event.detail.socketWrapper.reconnect(); }, 500 + Math.random() * 2000);
    }
  });

  function updateRows(tbody) {
    tbody.querySelectorAll("tr[data-id]").forEach(function (row) {
      var existing = document.getElementById(row.id);
      if (!existing) return;
      if (row.hasAttribute("data-remove")) { existing.remove(); return; }
      row.classList.add("is-updated");
      existing.replaceWith(row);
      if (window.htmx) window.htmx.process(row);
    });
    refreshTimes();
  }

  // Every frame is HTML. Rows get the treatment above; an element marked data-append adds its
  // children (those not shown yet) to the page's element of the same id; any other element with
  // an id replaces the page's element of that id.
  function applyFrame(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    Array.prototype.slice.call(template.content.children).forEach(function (element) {
      if (element.id === "demand-rows") {
        var newestBefore = newestShownId();
        insertRows(element.innerHTML);
        // A burst: the server sent only the newest rows; ask for everything after what we had.
        if (element.hasAttribute("data-more") && socket) socket.send(JSON.stringify({ resume_after: newestBefore }));
        return;
      }
      if (element.id === "demand-updates") { updateRows(element); return; }
      var target = element.id && document.getElementById(element.id);
      if (!target) return;
      if (element.hasAttribute("data-append")) {
        Array.prototype.slice.call(element.children).forEach(function (child) {
          if (child.id && document.getElementById(child.id)) return;
          target.appendChild(child);
          if (window.htmx) window.htmx.process(child);
          if (child.classList.contains("toast")) {
            setTimeout(function () { child.remove(); }, 10000);
          }
        });
      } else {
        target.replaceWith(element);
        if (window.htmx) window.htmx.process(element);
      }
    });
    refreshTimes();
  }

  document.addEventListener("htmx:wsBeforeMessage", function (event) {
    event.preventDefault(); // we swap ourselves (see above)
    applyFrame(event.detail.message);
  });

  // Relative times ("2 min ago"); the exact time stays in the title attribute.
  var relative = window.Intl && Intl.RelativeTimeFormat
    ? new Intl.RelativeTimeFormat(document.documentElement.lang || "en", { numeric: "auto" })
    : null;

  function refreshTimes(root) {
    if (!relative) return;
    var now = Date.now();
    (root || document).querySelectorAll("time[data-relative]").forEach(function (el) {
      var seconds = Math.round((new Date(el.getAttribute("datetime")).getTime() - now) / 1000);
      if (isNaN(seconds)) return;
      var abs = Math.abs(seconds);
      var text;
      if (abs < 60) text = relative.format(seconds, "second");
      else if (abs < 3600) text = relative.format(Math.round(seconds / 60), "minute");
      else if (abs < 86400) text = relative.format(Math.round(seconds / 3600), "hour");
      else text = relative.format(Math.round(seconds / 86400), "day");
      el.textContent = text;
    });
  }

  document.addEventListener("DOMContentLoaded", function () { refreshTimes(); });
  document.addEventListener("htmx:afterSettle", function () { refreshTimes(); });
  setInterval(refreshTimes, 15000);

  // Keyboard: j/k move through rows, Enter or o opens, x selects; on a demand page s/p/a focus
  // the status/priority/assignee menus and c the comment box; / focuses search; ? shows help.
  function rowsList() { var b = rowsBody(); return b ? Array.prototype.slice.call(b.querySelectorAll("tr[data-id]")) : []; }
  function cursorRow() { return document.querySelector("#demand-rows tr.is-cursor"); }
  function moveCursor(step) {
    var rows = rowsList();
    if (!rows.length) return;
    var current = cursorRow();
    var index = current ? rows.indexOf(current) + step : 0;
    index = Math.max(0, Math.min(rows.length - 1, index));
    if (current) current.classList.remove("is-cursor");
    rows[index].classList.add("is-cursor");
    rows[index].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      if (event.key === "Escape") target.blur();
      return;
    }
    var key = event.key;
    if (key === "j") { moveCursor(1); event.preventDefault(); return; }
    if (key === "k") { moveCursor(-1); event.preventDefault(); return; }
    if ((key === "Enter" || key === "o") && cursorRow()) { window.location = cursorRow().dataset.href; return; }
    if (key === "x" && cursorRow()) {
      var box = cursorRow().querySelector("input[type=checkbox]");
      if (box) { box.checked = !box.checked; box.dispatchEvent(new Event("change", { bubbles: true })); }
      return;
    }
    if (key === "?") { var help = document.getElementById("shortcuts-help"); if (help) help.hidden = !help.hidden; return; }
    var field = document.querySelector('[data-shortcut="' + key + '"]');
    if (field) { field.focus(); event.preventDefault(); }
  });

  // Select all shown rows; highlight selected ones.
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("input[data-select-all]")) {
      rowsList().forEach(function (row) {
        var box = row.querySelector("input[type=checkbox]");
        if (box) { box.checked = target.checked; row.classList.toggle("is-selected", target.checked); }
      });
    } else if (target.matches && target.matches('#demand-rows input[type=checkbox]')) {
      target.closest("tr").classList.toggle("is-selected", target.checked);
    }
  });

  // Exposed for tests and the console.
  window.umsg = { insertRows: insertRows, applyFrame: applyFrame, newestShownId: newestShownId };
})();
