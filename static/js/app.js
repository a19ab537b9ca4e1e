// The page's one live socket, the list page's rows, relative times, keyboard and selection.
//
// Every page opens one WebSocket, to the path its [data-ws-path] element names (see _base.html).
// Frames are HTML — rows, a demand's summary, notifications — or JSON for monitoring.js (the
// header summary, alert toasts, the monitoring page's charts), handed over as "umsg:monitoring"
// events. List rows come as <tr id="demand-N"> (newest first); we swap them ourselves so we can
// (1) drop rows the page already shows — a resume replay and a live batch may overlap —, (2)
// insert new ones at the top in id order, (3) keep the table bounded. Each time the socket opens
// (first connect and every reconnect) we ask for everything newer than our newest row, so a
// dropped connection leaves no gap. While the reader is at work (a cursor, a selection, the
// pointer on the table, scrolled down) new rows wait behind an "N new — show" pill instead, and
// the live cap never cuts a selected row. Text comes from Django's JavaScript catalog (jsi18n).
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
    Object.keys(held.rows).forEach(function (id) { if (+id > newest) newest = +id; });
    return newest;
  }

  // The list's indicator (#live-indicator) and the monitoring page's (#monitor-live) say what the
  // dot means: the connection to the server. The pipeline's state is shown beside it (below).
  function setLive(state, text, title) {
    ["live-indicator", "monitor-live"].forEach(function (id) {
      var indicator = document.getElementById(id);
      if (!indicator) return;
      indicator.classList.remove("connected", "disconnected");
      indicator.classList.add(state);
      indicator.querySelector(".label").textContent = text;
      indicator.title = title || text;
    });
  }

  // -- a list that holds still ----------------------------------------------------------------------
  // While the reader is at work — a keyboard cursor, a selection, the pointer over the table, or
  // scrolled down — new rows wait behind the "N new — show" pill (a click or "." shows them), and
  // rows that no longer match are dimmed instead of removed: nothing moves under the reader. At
  // the top of the page with none of these, rows are inserted at once, as before.
  var held = { rows: {}, gone: [], hover: false };

  function readerIsBusy() {
    if (!rowsBody()) return false;
    if (cursorRow() || document.querySelector("#demand-rows input[type=checkbox]:checked")) return true;
    return held.hover || window.scrollY > 24;
  }

  function heldCount() { return Object.keys(held.rows).length; }

  function renderPill() {
    var pill = document.getElementById("new-rows-pill");
    if (!pill) return;
    var n = heldCount();
    pill.hidden = n === 0;
    pill.textContent = interpolate(ngettext("%(count)s new — show", "%(count)s new — show", n), { count: n }, true);
  }

  function showHeld() {
    var rows = Object.keys(held.rows).map(function (id) { return held.rows[id]; });
    held.rows = {};
    held.gone.forEach(function (row) { if (row.isConnected) row.remove(); });
    held.gone = [];
    placeRows(rows);
    renderPill();
    updateSelectionCount();
  }

  // When the reader lets go (leaves the table, clears the selection, scrolls back up), what waited is shown.
  function releaseIfIdle() {
    if ((heldCount() || held.gone.length) && !readerIsBusy()) showHeld();
  }

  document.addEventListener("pointerover", function (event) {
    var inside = !!(event.target.closest && event.target.closest("#demand-table table"));
    if (inside === held.hover) return;
    held.hover = inside;
    if (!inside) releaseIfIdle();
  });
  document.documentElement.addEventListener("pointerleave", function () { held.hover = false; releaseIfIdle(); });
  var scrollTimer = null;
  window.addEventListener("scroll", function () {
    clearTimeout(scrollTimer);
    scrollTimer = setTimeout(releaseIfIdle, 150);
  }, { passive: true });
  document.addEventListener("click", function (event) {
    if (!(event.target.closest && event.target.closest("#new-rows-pill"))) return;
    showHeld();
    if (window.scrollY > 0) window.scrollTo({ top: 0 });
  });

  function insertRows(html) {
    var body = rowsBody();
    if (!body) return;
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    var fresh = [];
    template.content.querySelectorAll("tr[data-id]").forEach(function (row) {
      if (!document.getElementById(row.id) && !held.rows[row.dataset.id]) fresh.push(row);
    });
    if (!fresh.length) return;
    if (readerIsBusy()) {
      fresh.forEach(function (row) { held.rows[row.dataset.id] = row; });
      // Never more waiting than the table holds: the oldest would be cut on showing anyway.
      var ids = Object.keys(held.rows).map(Number).sort(function (a, b) { return b - a; });
      ids.slice(liveMaxRows()).forEach(function (id) { delete held.rows[id]; });
      renderPill();
      return;
    }
    placeRows(fresh);
  }

  function liveMaxRows() {
    var container = document.getElementById("demand-table");
    return parseInt((container && container.dataset.liveMaxRows) || "200", 10);
  }

  function placeRows(fresh) {
    var body = rowsBody();
    if (!body || !fresh.length) return;
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
    // The table stays bounded, but a selected row or the cursor row is never cut: the bulk bar
    // must act on what it says is selected.
    var all = body.querySelectorAll("tr[data-id]");
    for (var j = liveMaxRows(); j < all.length; j++) {
      if (all[j].classList.contains("is-cursor") || all[j].querySelector("input[type=checkbox]:checked")) continue;
      all[j].remove();
    }
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
      setLive("connected", gettext("Connected"), gettext("Live updates: connected to the server"));
      if (rowsBody()) sendJson({ resume_after: newestShownId() });
    };
    socket.onmessage = function (event) { receiveFrame(event.data); };
    socket.onclose = function (event) {
      if (live.socket !== socket) return;
      live.socket = null;
      if (event.code === CLOSE_FORBIDDEN) {
        setLive("disconnected", gettext("Disconnected"), gettext("Live updates stopped: reload the page"));
        return;
      }
      setLive("disconnected", gettext("Reconnecting…"), gettext("Live updates: the connection to the server dropped; reconnecting"));
      live.attempt += 1;
      var delay = Math.min(5000, 250 * Math.pow(2, live.attempt)) * (0.5 + Math.random() / 2);
      live.timer = setTimeout(openSocket, delay);
    };
  }

  // Called on load and after every htmx swap: connect to the path the page now names.
  function followPage() {
    var path = livePath();
    if (path === live.path) {
      if (live.socket && live.socket.readyState === WebSocket.OPEN) setLive("connected", gettext("Connected"), gettext("Live updates: connected to the server"));
      return;
    }
    var first = live.path === null && !live.socket;
    live.path = path;
    if (live.socket) { retire(live.socket); live.socket = null; }
    clearTimeout(live.timer);
    live.attempt = 0;
    held.rows = {}; held.gone = []; // what waited belongs to the filters the page had
    renderPill();
    setLive("disconnected", gettext("Connecting…"), gettext("Live updates: connecting to the server"));
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
    var busy = readerIsBusy();
    tbody.querySelectorAll("tr[data-id]").forEach(function (row) {
      if (held.rows[row.dataset.id]) { // a waiting row changed: it waits as it is now (or no more)
        if (row.hasAttribute("data-remove")) delete held.rows[row.dataset.id];
        else held.rows[row.dataset.id] = row;
        renderPill();
        return;
      }
      var existing = document.getElementById(row.id);
      if (!existing) return;
      if (row.hasAttribute("data-remove")) {
        // Rows leave only when the reader lets go; meanwhile a selected one stays selectable.
        if (busy) { existing.classList.add("is-gone"); held.gone.push(existing); return; }
        existing.remove(); updateSelectionCount(); return;
      }
      row.classList.add("is-updated");
      // Someone else's change must not drop this reader's selection or keyboard cursor.
      var wasChecked = existing.querySelector("input[type=checkbox]:checked");
      var box = row.querySelector("input[type=checkbox]");
      if (wasChecked && box) { box.checked = true; row.classList.add("is-selected"); }
      if (existing.classList.contains("is-cursor")) {
        row.classList.add("is-cursor"); row.setAttribute("aria-current", "true"); row.tabIndex = -1;
      }
      if (existing.classList.contains("is-gone")) row.classList.add("is-gone");
      var hadFocus = document.activeElement === existing;
      existing.replaceWith(row);
      if (hadFocus) row.focus({ preventScroll: true });
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
          if (child.classList.contains("toast") && groupToast(target, child)) return;
          target.appendChild(child);
          if (window.htmx) window.htmx.process(child);
          if (child.classList.contains("toast")) expireToast(child);
        });
      } else {
        target.replaceWith(element);
        if (window.htmx) window.htmx.process(element);
      }
    });
    refreshTimes();
  }

  // Toasts of one kind (say, a rule routing demands to one team) are one toast that counts —
  // "4 demands routed to Payments" — and stays 10 s after the latest, instead of a stack.
  function expireToast(toast) {
    clearTimeout(toast._expiry);
    toast._expiry = setTimeout(function () { toast.remove(); }, 10000);
  }

  function groupToast(box, toast) {
    var key = toast.dataset.group;
    if (!key) return false;
    var shown = null;
    box.querySelectorAll(".toast[data-group]").forEach(function (other) { if (other.dataset.group === key) shown = other; });
    if (!shown) return false;
    var count = parseInt(shown.dataset.count || "1", 10) + 1;
    shown.dataset.count = String(count);
    var title = shown.querySelector(".toast-title");
    if (!title) {
      title = document.createElement("strong");
      title.className = "toast-title";
      shown.insertBefore(title, shown.firstChild);
    }
    title.textContent = (toast.dataset.groupText || "{count}").replace("{count}", String(count));
    var latest = toast.querySelector("a");
    var link = shown.querySelector("a");
    if (latest && link) link.replaceWith(latest);
    shown.id = toast.id; // a replayed frame of the latest is then recognised as shown
    expireToast(shown);
    return true;
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
    setCursor(rows[index]);
    rows[index].scrollIntoView({ block: "nearest" });
  }
  // The cursor row is focused (screen readers read it) and marked as current; CSS draws it.
  function setCursor(row) {
    var current = cursorRow();
    if (current) { current.classList.remove("is-cursor"); current.removeAttribute("aria-current"); }
    if (!row) { if (current && document.activeElement === current) current.blur(); return; }
    row.classList.add("is-cursor");
    row.setAttribute("aria-current", "true");
    row.tabIndex = -1;
    row.focus({ preventScroll: true });
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
    if (key === "." && (heldCount() || held.gone.length)) { showHeld(); event.preventDefault(); return; }
    if (key === "Escape" && cursorRow()) { setCursor(null); releaseIfIdle(); return; }
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
    if (target.matches && target.matches("input[data-select-all], #demand-rows input[type=checkbox]")) releaseIfIdle();
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

  // -- the pipeline's state beside the list's live dot ---------------------------------------------
  // Read from the header's monitoring summary (#monitor-summary, kept live by monitoring.js): its
  // health (a data-health attribute, else a health-* class) and its lag item's text.
  var PIPELINE_TEXT = { ok: gettext("Pipeline OK"), warning: gettext("Pipeline degraded"), critical: gettext("Pipeline down") };

  function showPipelineState() {
    var badge = document.getElementById("pipeline-state");
    var summary = document.getElementById("monitor-summary");
    if (!badge || !summary) return;
    var source = summary.querySelector("[data-health]") || summary.querySelector("[class*='health-']");
    var health = source && (source.dataset.health || (/\bhealth-(\w+)/.exec(source.className) || [])[1]);
    if (!health || !PIPELINE_TEXT[health]) { badge.hidden = true; return; }
    badge.hidden = false;
    badge.className = "pipeline-state health-" + health;
    badge.querySelector(".label").textContent = PIPELINE_TEXT[health];
    var details = [];
    summary.querySelectorAll("[data-metric=lag], [data-metric=dead], [data-metric=alerts]").forEach(function (item) {
      details.push(item.textContent.replace(/\s+/g, " ").trim());
    });
    badge.title = details.join(" · ") || PIPELINE_TEXT[health];
  }

  document.addEventListener("DOMContentLoaded", function () {
    var summary = document.getElementById("monitor-summary");
    if (summary && window.MutationObserver) {
      new MutationObserver(showPipelineState).observe(summary, { childList: true, subtree: true, attributes: true, characterData: true });
    }
    showPipelineState();
  });
  document.addEventListener("htmx:afterSettle", showPipelineState);

  // -- the top bar and the phone's sheets ----------------------------------------------------------
  // The table's sticky header sits under the top bar, whose height changes when it wraps.
  function measureTopbar() {
    var bar = document.querySelector(".topbar");
    var height = bar && window.getComputedStyle(bar).position === "sticky" ? bar.offsetHeight : 0;
    document.documentElement.style.setProperty("--topbar-h", height + "px");
  }
  document.addEventListener("DOMContentLoaded", function () {
    measureTopbar();
    var bar = document.querySelector(".topbar");
    if (bar && window.ResizeObserver) new ResizeObserver(measureTopbar).observe(bar);
  });

  // The menu button (phones) opens the top bar; the "Filters (n)" button opens the filter sheet.
  document.addEventListener("click", function (event) {
    var toggle = event.target.closest && event.target.closest("[data-toggle-open]");
    if (!toggle) return;
    var target = document.getElementById(toggle.getAttribute("aria-controls"));
    if (!target) return;
    event.preventDefault();
    var open = !target.classList.contains("is-open");
    target.classList.toggle("is-open", open);
    document.querySelectorAll('[data-toggle-open][aria-controls="' + target.id + '"]').forEach(function (button) {
      button.setAttribute("aria-expanded", String(open));
    });
    if (open) {
      var first = target.querySelector("select, input:not([type=hidden]), a, button:not([data-toggle-open])");
      if (first && target.id === "filters") first.focus();
    }
  });

  // Exposed for tests and the console.
  window.umsg = {
    insertRows: insertRows, applyFrame: applyFrame, newestShownId: newestShownId, showHeld: showHeld,
    heldCount: heldCount,
    socket: function () { return live.socket; }
  };
})();
