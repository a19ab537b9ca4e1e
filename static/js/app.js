// The page's one live socket, the list page's rows, relative times, keyboard and selection.
//
// Every page opens one WebSocket, to the path its [data-ws-path] element names (see _base.html).
// Frames are HTML — rows, a demand's summary, notifications — or JSON for monitoring.js (the
// header summary, alert toasts, the monitoring page's charts), handed over as "umsg:monitoring"
// events. List rows come as <tr id="demand-N"> (newest first); we swap them ourselves so we can
// (1) drop rows the page already shows — a resume replay and a live batch may overlap —, (2)
// insert new ones at the top in id order, (3) keep the table bounded. Each time the socket opens
// (first connect and every reconnect) we ask for everything newer than our newest row, so a
// dropped connection leaves no gap. Text comes from Django's JavaScript catalog (jsi18n).
(function () {
  "use strict";

  var gettext = window.gettext || function (text) { return text; };
  var ngettext = window.ngettext || function (one, many, n) { return n === 1 ? one : many; };
  var interpolate = window.interpolate || function (format, values) {
    return format.replace(/%\((\w+)\)s/g, function (_, name) { return String(values[name]); });
  };

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

  // The list's indicator (#live-indicator) and the monitoring page's (#monitor-live).
  function setLive(state, text) {
    ["live-indicator", "monitor-live"].forEach(function (id) {
      var indicator = document.getElementById(id);
      if (!indicator) return;
      indicator.classList.remove("connected", "disconnected");
      indicator.classList.add(state);
      indicator.querySelector(".label").textContent = text;
    });
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

  // -- the socket ----------------------------------------------------------------------------------
  // Filtering swaps in a table with another path: the socket follows (a short wait first, so
  // quick changes open one socket, not one each). It reconnects with capped, jittered back-off,
  // except after 4403: the user is signed out or no longer staff, and would be refused again.
  var live = { socket: null, path: null, attempt: 0, timer: null };
  var CLOSE_FORBIDDEN = 4403;

  function livePath() {
    var element = document.querySelector("[data-ws-path]");
    return element ? element.dataset.wsPath : null;
  }

  function sendJson(data) {
    if (live.socket && live.socket.readyState === WebSocket.OPEN) live.socket.send(JSON.stringify(data));
  }

  // Closing a socket that is still connecting makes the browser log "WebSocket is closed before
  // the connection is established": one that is still connecting is closed as soon as it opens.
  function retire(socket) {
    socket.onmessage = socket.onclose = socket.onerror = null;
    if (socket.readyState === WebSocket.CONNECTING) {
      socket.onopen = function () { socket.close(1000); };
    } else {
      socket.onopen = null;
      if (socket.readyState === WebSocket.OPEN) socket.close(1000);
    }
  }

  function openSocket() {
    clearTimeout(live.timer);
    live.timer = null;
    if (!live.path || !window.WebSocket) return;
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + live.path);
    live.socket = socket;
    socket.onopen = function () {
      live.attempt = 0;
      setLive("connected", gettext("Live"));
      if (rowsBody()) sendJson({ resume_after: newestShownId() });
    };
    socket.onmessage = function (event) { receiveFrame(event.data); };
    socket.onclose = function (event) {
      if (live.socket !== socket) return;
      live.socket = null;
      if (event.code === CLOSE_FORBIDDEN) {
        setLive("disconnected", gettext("Live updates stopped: reload the page"));
        return;
      }
      setLive("disconnected", gettext("Reconnecting…"));
      live.attempt += 1;
      var delay = Math.min(5000, 250 * Math.pow(2, live.attempt)) * (0.5 + Math.random() / 2);
      live.timer = setTimeout(openSocket, delay);
    };
  }

  // Called on load and after every htmx swap: connect to the path the page now names.
  function followPage() {
    var path = livePath();
    if (path === live.path) {
      if (live.socket && live.socket.readyState === WebSocket.OPEN) setLive("connected", gettext("Live"));
      return;
    }
    var first = live.path === null && !live.socket;
    live.path = path;
    if (live.socket) { retire(live.socket); live.socket = null; }
    clearTimeout(live.timer);
    live.attempt = 0;
    setLive("disconnected", gettext("Connecting…"));
    if (first) openSocket();
    else live.timer = setTimeout(openSocket, 150);
  }

  document.addEventListener("DOMContentLoaded", followPage);
  document.addEventListener("htmx:afterSettle", followPage);
  document.addEventListener("htmx:historyRestore", followPage);

  function receiveFrame(data) {
    if (data.charAt(0) === "{") {
      var frame;
      try { frame = JSON.parse(data); } catch (e) { return; } // a malformed frame is skipped
      document.dispatchEvent(new CustomEvent("umsg:monitoring", { detail: frame }));
      return;
    }
    applyFrame(data);
  }

  function updateRows(tbody) {
    tbody.querySelectorAll("tr[data-id]").forEach(function (row) {
      var existing = document.getElementById(row.id);
      if (!existing) return;
      if (row.hasAttribute("data-remove")) { existing.remove(); updateSelectionCount(); return; }
      row.classList.add("is-updated");
      // Someone else's change must not drop this reader's selection or keyboard cursor.
      var wasChecked = existing.querySelector("input[type=checkbox]:checked");
      var box = row.querySelector("input[type=checkbox]");
      if (wasChecked && box) { box.checked = true; row.classList.add("is-selected"); }
      if (existing.classList.contains("is-cursor")) row.classList.add("is-cursor");
      existing.replaceWith(row);
      if (window.htmx) window.htmx.process(row);
    });
    refreshTimes();
  }

  // An HTML frame: rows get the treatment above; an element marked data-append adds its
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
        if (element.hasAttribute("data-more")) sendJson({ resume_after: newestBefore });
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

  // Keyboard: j/k move through rows, Enter or o opens, x selects, and s/p/a go to the bulk
  // status/priority/assignee menus for the selection (the cursor row when nothing is selected);
  // on a demand page s/p/a focus its status/priority/assignee menus and c the comment box;
  // / focuses search; ? opens the help (also a button in the page header).
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
  function setChecked(box, checked) {
    box.checked = checked;
    box.dispatchEvent(new Event("change", { bubbles: true }));
  }
  function toggleHelp(show) {
    var help = document.getElementById("shortcuts-help");
    if (!help || !help.showModal) return;
    if (show === undefined) show = !help.open;
    if (show && !help.open) help.showModal();
    else if (!show && help.open) help.close();
  }
  document.addEventListener("click", function (event) {
    if (event.target.closest && event.target.closest("[data-shortcuts-open]")) toggleHelp(true);
  });
  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
      if (event.key === "Escape") target.blur();
      return;
    }
    var key = event.key;
    if (key === "?") { toggleHelp(); event.preventDefault(); return; }
    var help = document.getElementById("shortcuts-help");
    if (help && help.open) return; // the dialog is modal: keys do not reach the page behind it
    if (key === "j") { moveCursor(1); event.preventDefault(); return; }
    if (key === "k") { moveCursor(-1); event.preventDefault(); return; }
    // Enter on a control (the bulk Apply button, a link, a menu) is that control's: opening the row
    // as well would race a GET against its POST.
    if (key === "Enter" && target && target.closest && target.closest("a, button, input, select, textarea, summary, [role=listbox], [role=option], [role=combobox], [role=dialog], dialog")) return;
    if ((key === "Enter" || key === "o") && cursorRow()) { window.location = cursorRow().dataset.href; return; }
    if (key === "x" && cursorRow()) {
      var box = cursorRow().querySelector("input[type=checkbox]");
      if (box) setChecked(box, !box.checked);
      return;
    }
    var field = document.querySelector('[data-shortcut="' + key + '"]');
    if (!field) return;
    // In the list, a bulk menu acts on the selection: with none, on the cursor row.
    if (field.form && field.form.id === "bulk-form" && !document.querySelector("#demand-rows tr.is-selected") && cursorRow()) {
      var cursorBox = cursorRow().querySelector("input[type=checkbox]");
      if (cursorBox) setChecked(cursorBox, true);
    }
    field.focus();
    event.preventDefault();
  });

  // Select all shown rows; highlight selected ones; the bulk bar says how many are selected.
  function updateSelectionCount() {
    var label = document.querySelector("[data-selection-count]");
    if (!label) return;
    if (!label.dataset.idleText) label.dataset.idleText = label.textContent;
    var n = document.querySelectorAll("#demand-rows input[type=checkbox]:checked").length;
    label.textContent = n
      ? interpolate(ngettext("%(count)s selected:", "%(count)s selected:", n), { count: n }, true)
      : label.dataset.idleText;
    label.closest("form").classList.toggle("has-selection", n > 0);
  }
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("input[data-select-all]")) {
      rowsList().forEach(function (row) {
        var box = row.querySelector("input[type=checkbox]");
        if (box) { box.checked = target.checked; row.classList.toggle("is-selected", target.checked); }
      });
      updateSelectionCount();
    } else if (target.matches && target.matches('#demand-rows input[type=checkbox]')) {
      target.closest("tr").classList.toggle("is-selected", target.checked);
      updateSelectionCount();
    }
  });

  // A click anywhere on a row opens the demand (links, checkboxes and text selection keep their
  // own behaviour); a click in the checkbox cell toggles the checkbox, a bigger target on phones.
  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("#demand-rows tr[data-href]");
    if (!row || event.defaultPrevented || event.button !== 0) return;
    if (event.target.closest("a, button, input, select, label, textarea")) return;
    var cell = event.target.closest("td.select");
    if (cell) {
      var box = cell.querySelector("input[type=checkbox]");
      if (box) setChecked(box, !box.checked);
      return;
    }
    if (window.getSelection && String(window.getSelection())) return;
    if (event.ctrlKey || event.metaKey) { window.open(row.dataset.href, "_blank"); return; }
    window.location = row.dataset.href;
  });

  // Exposed for tests and the console.
  window.umsg = {
    insertRows: insertRows, applyFrame: applyFrame, newestShownId: newestShownId,
    socket: function () { return live.socket; }
  };
})();
