// Triage from the keyboard: menus you filter by typing (s status, p priority, a assignee, i assign
// to me, e resolve), the command palette (Ctrl/⌘+K) with the same actions, Ctrl/⌘+Enter to send
// the comment, and a short confirmation (toast) after each change.
//
// On a demand's page (#triage-form, templates/demands/_triage_panel.html) a choice sets the form's
// field and posts the form with htmx: the server applies every changed field in one step
// (demands/triage/) and answers the panel, the summary, the history and the toast. On the list a
// choice acts on the selected rows (the bulk form, as its Apply button) or, with none selected,
// on the keyboard cursor's row (one htmx post with from=list; the row itself updates live).
// Menus are listboxes (role=listbox/option) driven from their filter field through
// aria-activedescendant; their choices are read from the page's own menus, so every label is
// the server's translation. Text of our own comes from Django's JavaScript catalog.
(function () {
  "use strict";

  var gettext = window.gettext || function (text) { return text; };
  var interpolate = window.interpolate || function (format, values) {
    return format.replace(/%\((\w+)\)s/g, function (_, name) { return String(values[name]); });
  };

  function triageForm() { return document.getElementById("triage-form"); }
  function bulkForm() { return document.getElementById("bulk-form"); }
  function cursorRow() { return document.querySelector("#demand-rows tr.is-cursor"); }
  function fieldSelect(name) {
    var form = triageForm() || bulkForm();
    return form ? form.querySelector('select[name="' + name + '"]') : null;
  }
  function isTyping(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  // -- confirmations -----------------------------------------------------------------------------
  var TOAST_MS = 5000;
  function expireToasts() {
    document.querySelectorAll("#toasts [data-expire]:not([data-expiring])").forEach(function (toast) {
      toast.setAttribute("data-expiring", "");
      setTimeout(function () { toast.remove(); }, TOAST_MS);
    });
  }
  function toast(text, isError) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var item = document.createElement("div");
    item.className = "toast " + (isError ? "error" : "success");
    item.setAttribute("role", "status");
    item.setAttribute("data-expire", "");
    item.textContent = text;
    box.appendChild(item);
    expireToasts();
  }

  // -- the menu (also the palette) -----------------------------------------------------------------
  var menu = null;
  var menuCount = 0;

  function score(item, query) {
    if (!query) return 1;
    var label = item.label.toLowerCase();
    var at = label.indexOf(query);
    if (at === 0) return 4;
    if (at > 0 && /[\s:→(]/.test(label.charAt(at - 1))) return 3;
    if (at > 0) return 2;
    return item.keywords && item.keywords.toLowerCase().indexOf(query) >= 0 ? 1 : 0;
  }

  function openMenu(title, items, onPick, options) {
    closeMenu(false);
    options = options || {};
    var id = "triage-menu-" + (++menuCount);
    var root = document.createElement("div");
    root.className = "triage-menu" + (options.palette ? " is-palette" : "");
    root.setAttribute("role", "dialog");
    root.setAttribute("aria-label", title);
    var heading = document.createElement("div");
    heading.className = "triage-menu-title";
    heading.textContent = title;
    var input = document.createElement("input");
    input.type = "text";
    input.className = "triage-menu-filter";
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-expanded", "true");
    input.setAttribute("aria-controls", id);
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-label", title);
    input.setAttribute("autocomplete", "off");
    input.spellcheck = false;
    input.placeholder = options.placeholder || gettext("Type to filter…");
    var list = document.createElement("ul");
    list.id = id;
    list.setAttribute("role", "listbox");
    list.setAttribute("aria-label", title);
    root.appendChild(heading);
    root.appendChild(input);
    root.appendChild(list);
    document.body.appendChild(root);
    menu = { root: root, input: input, list: list, items: items, shown: [], active: -1, onPick: onPick,
             numbers: !!options.numbers, back: document.activeElement };
    renderMenu();
    input.addEventListener("input", renderMenu);
    input.addEventListener("keydown", menuKey);
    list.addEventListener("mousedown", function (event) { event.preventDefault(); });
    list.addEventListener("click", function (event) {
      var option = event.target.closest("[role=option]");
      if (option) pick(parseInt(option.dataset.index, 10));
    });
    input.focus();
  }

  function renderMenu() {
    var query = menu.input.value.trim().toLowerCase();
    menu.shown = menu.items
      .map(function (item, index) { return { item: item, score: score(item, query), index: index }; })
      .filter(function (entry) { return entry.score > 0; })
      .sort(function (a, b) { return b.score - a.score || a.index - b.index; })
      .map(function (entry) { return entry.item; });
    menu.list.textContent = "";
    menu.shown.forEach(function (item, n) {
      var option = document.createElement("li");
      option.id = menu.list.id + "-" + n;
      option.setAttribute("role", "option");
      option.setAttribute("aria-selected", "false");
      option.dataset.index = String(n);
      if (menu.numbers && n < 9 && !query) {
        var number = document.createElement("kbd");
        number.setAttribute("aria-hidden", "true");
        number.textContent = String(n + 1);
        option.appendChild(number);
      }
      var label = document.createElement("span");
      label.className = "label";
      label.textContent = item.label;
      option.appendChild(label);
      if (item.current) {
        option.classList.add("is-current");
        var now = document.createElement("span");
        now.className = "current";
        now.textContent = gettext("current");
        option.appendChild(now);
      }
      if (item.keys) {
        var keys = document.createElement("kbd");
        keys.className = "keys";
        keys.textContent = item.keys;
        option.appendChild(keys);
      }
      menu.list.appendChild(option);
    });
    if (!menu.shown.length) {
      var empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = gettext("No match");
      menu.list.appendChild(empty);
    }
    highlight(menu.shown.length ? 0 : -1);
  }

  function highlight(n) {
    var options = menu.list.querySelectorAll("[role=option]");
    if (!options.length) { menu.active = -1; menu.input.removeAttribute("aria-activedescendant"); return; }
    n = Math.max(0, Math.min(options.length - 1, n));
    options.forEach(function (option, i) { option.setAttribute("aria-selected", i === n ? "true" : "false"); });
    menu.active = n;
    menu.input.setAttribute("aria-activedescendant", options[n].id);
    options[n].scrollIntoView({ block: "nearest" });
  }

  function menuKey(event) {
    var key = event.key;
    if (key === "ArrowDown" || key === "ArrowUp" || key === "Home" || key === "End") {
      var last = menu.shown.length - 1;
      highlight(key === "ArrowDown" ? menu.active + 1 : key === "ArrowUp" ? menu.active - 1 : key === "Home" ? 0 : last);
    } else if (key === "Enter") {
      pick(menu.active);
    } else if (key === "Escape") {
      closeMenu(true);
    } else if (key === "Tab") {
      closeMenu(true);
    } else if (menu.numbers && !menu.input.value && /^[1-9]$/.test(key) && !event.ctrlKey && !event.metaKey && !event.altKey) {
      pick(parseInt(key, 10) - 1);  // an empty filter: a number picks that line (digits filter once typing began)
    } else {
      return;
    }
    event.preventDefault();
    event.stopPropagation();  // Enter and Escape are the menu's, not the page's (app.js)
  }

  function pick(n) {
    var item = menu && menu.shown[n];
    if (!item) return;
    var onPick = menu.onPick;
    closeMenu(true);
    onPick(item);
  }

  function closeMenu(restoreFocus) {
    if (!menu) return;
    var back = menu.back;
    menu.root.remove();
    menu = null;
    if (restoreFocus && back && back !== document.body && document.contains(back) && back.focus) back.focus();
  }

  document.addEventListener("mousedown", function (event) {
    if (menu && !menu.root.contains(event.target)) closeMenu(false);
  });

  // -- choices and what applying one does -----------------------------------------------------------
  function choices(name) {
    var select = fieldSelect(name);
    if (!select) return [];
    var inBulk = select.form === bulkForm();
    var seen = {};
    var current = inBulk ? null : select.form.querySelector('[name="was_' + name + '"]');
    return Array.prototype.slice.call(select.options).filter(function (option) {
      if (inBulk && option.value === "") return false;  // the bulk menu's "—" (leave as is)
      if (seen[option.value]) return false;
      seen[option.value] = true;
      return true;
    }).map(function (option) {
      return { value: option.value, label: option.textContent.trim(), current: !!current && current.value === option.value };
    });
  }

  function listTargets() {
    var boxes = Array.prototype.slice.call(document.querySelectorAll("#demand-rows input[type=checkbox]:checked"));
    var rows = boxes.map(function (box) { return box.closest("tr"); });
    if (!rows.length && cursorRow()) rows = [cursorRow()];
    return rows;
  }

  // One post at a time on a demand's page: the next choice waits for the panel (and the version)
  // the previous one brings back, so quick keys never post a stale version.
  var inFlight = false;
  var queued = [];

  function apply(name, value) {
    var form = triageForm();
    if (form && inFlight) { queued.push([name, value]); return; }
    if (form) {
      if (name === "assignee" && value === "me") value = form.dataset.me;
      var values = { body: "" };  // a draft comment stays in its box, unsent (restored after the swap)
      values[name] = value;
      var select = form.querySelector('select[name="' + name + '"]');
      if (select) select.value = value;
      if (!window.htmx) {
        var body = form.querySelector("textarea[name=body]");
        if (body) body.value = "";
        form.requestSubmit();
        return;
      }
      inFlight = true;
      window.htmx.ajax("POST", form.getAttribute("action"), { source: form, target: "#triage-panel", swap: "outerHTML", values: values })
        .then(settled, settled);
      return;
    }
    var rows = listTargets();
    if (!rows.length) { toast(gettext("Move to a demand with j/k, or select some with x, first."), true); return; }
    if (rows.length > 1 || !window.htmx) {
      var bulk = bulkForm();
      ["status", "priority", "assignee"].forEach(function (field) {
        var menuOf = bulk.querySelector('select[name="' + field + '"]');
        if (menuOf) menuOf.value = field === name ? value : "";
      });
      rows.forEach(function (row) { var box = row.querySelector("input[type=checkbox]"); if (box) box.checked = true; });
      bulk.requestSubmit();
      return;
    }
    var post = { from: "list" };
    post[name] = value;
    window.htmx.ajax("POST", rows[0].dataset.href + "triage/", { source: rows[0], swap: "none", values: post });
  }

  function settled() {
    inFlight = false;
    var next = queued.shift();
    if (next) apply(next[0], next[1]);
  }

  function menuFor(name) {
    var titles = { status: gettext("Status"), priority: gettext("Priority"), assignee: gettext("Assignee") };
    var items = choices(name);
    if (!items.length) return false;
    openMenu(titles[name], items, function (item) { apply(name, item.value); },
             { numbers: name !== "assignee", placeholder: name === "assignee" ? gettext("Type a name…") : null });
    return true;
  }

  function assignToMe() { apply("assignee", "me"); }
  function resolve() { apply("status", "resolved"); }

  function comment() {
    var box = document.getElementById("comment-body");
    if (box) { box.focus(); return; }
    var rows = listTargets();
    if (rows.length) window.location = rows[0].dataset.href + "#comment-body";
  }

  function paletteItems() {
    var items = [
      { label: gettext("Change status…"), keys: "s", run: function () { menuFor("status"); } },
      { label: gettext("Set priority…"), keys: "p", run: function () { menuFor("priority"); } },
      { label: gettext("Assign…"), keys: "a", run: function () { menuFor("assignee"); } },
      { label: gettext("Assign to me"), keys: "i", run: assignToMe },
      { label: gettext("Resolve"), keys: "e", run: resolve },
      { label: gettext("Comment"), keys: "c", run: comment },
    ];
    var direct = [
      ["status", gettext("Status: %(value)s")], ["priority", gettext("Priority: %(value)s")], ["assignee", gettext("Assign to %(value)s")],
    ];
    direct.forEach(function (pair) {
      choices(pair[0]).forEach(function (choice) {
        if (choice.current) return;
        items.push({ label: interpolate(pair[1], { value: choice.label }, true), run: function () { apply(pair[0], choice.value); } });
      });
    });
    document.querySelectorAll(".topbar .nav a[href]").forEach(function (link) {
      var href = link.getAttribute("href");
      items.push({ label: interpolate(gettext("Go to %(page)s"), { page: link.textContent.trim() }, true), keywords: href,
                   run: function () { window.location = href; } });
    });
    return items;
  }

  function openPalette() {
    openMenu(gettext("Command palette"), paletteItems(), function (item) { item.run(); },
             { palette: true, placeholder: gettext("Type a command…") });
  }

  // -- keys --------------------------------------------------------------------------------------------
  // Capture on window: runs before app.js's page keys, which must not also act on these.
  var KEYS = {
    s: function () { return menuFor("status"); }, p: function () { return menuFor("priority"); },
    a: function () { return menuFor("assignee"); }, i: function () { assignToMe(); return true; },
    e: function () { resolve(); return true; },
  };
  function triageable() { return !!(triageForm() || (bulkForm() && document.getElementById("demand-rows"))); }

  window.addEventListener("keydown", function (event) {
    var target = event.target;
    if ((event.ctrlKey || event.metaKey) && !event.altKey && (event.key === "k" || event.key === "K")) {
      if (!triageable()) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      if (menu) closeMenu(true); else openPalette();
      return;
    }
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && target && target.id === "comment-body") {
      event.preventDefault();
      event.stopImmediatePropagation();
      if (target.value.trim()) target.form.requestSubmit();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || menu || isTyping(target)) return;
    var help = document.getElementById("shortcuts-help");
    if (help && help.open) return;
    var action = KEYS[event.key];
    if (!action || !triageable()) return;
    if (action()) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // A menu of the form changed with the mouse applies at once, like a keyboard choice. Moved with
  // the keyboard (arrows, letters: Chrome fires "change" at each), it applies on Enter — which
  // would otherwise open the native dropdown — or when it loses the focus; Escape puts it back.
  var keyed = null;
  function formSelect(element) { return element && element.tagName === "SELECT" && element.form && element.form.id === "triage-form"; }
  function applyIfChanged(select) {
    var was = select.form.querySelector('[name="was_' + select.name + '"]');
    if (!was || was.value !== select.value) apply(select.name, select.value);
  }
  document.addEventListener("keydown", function (event) {
    var select = event.target;
    if (!formSelect(select) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Enter") {
      event.preventDefault();
      keyed = null;
      applyIfChanged(select);
    } else if (event.key === "Escape") {
      var was = select.form.querySelector('[name="was_' + select.name + '"]');
      if (keyed === select && was) select.value = was.value;
      keyed = null;
    } else if (event.key !== "Tab" && event.key !== "Shift") {
      keyed = select;
    }
  }, true);
  document.addEventListener("focusout", function (event) {
    if (keyed && keyed === event.target) { keyed = null; applyIfChanged(event.target); }
  });
  document.addEventListener("change", function (event) {
    var select = event.target;
    if (formSelect(select) && keyed !== select) apply(select.name, select.value);
  });

  // -- after a change -------------------------------------------------------------------------------------
  // The live frame of our own change says "changed by someone else": drop that notice when the
  // summary's version is the one our own post produced.
  var ownVersion = null;
  function quietOwnChange() {
    var summary = document.getElementById("demand-summary");
    if (!summary || ownVersion === null || summary.dataset.version !== ownVersion) return;
    var notice = summary.querySelector(".notice");
    if (notice) notice.remove();
  }

  // The panel comes back with an empty comment box: what the user typed meanwhile (while a menu's
  // post was on its way) or what a refused post carried is put back; only a comment that was sent
  // and saved leaves the box.
  var sentBody = "";
  var draft = "";
  function isPanel(event) { return event.detail && event.detail.target && event.detail.target.id === "triage-panel"; }
  document.addEventListener("htmx:configRequest", function (event) {
    var form = triageForm();
    if (!form || event.detail.elt !== form) return;
    var submitted = event.detail.triggeringEvent && event.detail.triggeringEvent.type === "submit";
    var box = form.querySelector("textarea[name=body]");
    sentBody = submitted && box ? box.value : "";  // a menu's post sends no comment (values: body "")
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (!isPanel(event)) return;
    var box = document.getElementById("comment-body");
    draft = box ? box.value : "";
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var form = triageForm();
    if (!form || !isPanel(event)) return;
    ownVersion = form.querySelector("[name=version]").value;
    quietOwnChange();
    var refused = !!form.parentNode.querySelector(".notice.error");
    var kept = draft;
    if (!refused && sentBody && kept.indexOf(sentBody) === 0) kept = kept.slice(sentBody.length).replace(/^\s+/, "");
    var box = form.querySelector("textarea[name=body]");
    if (kept && box) {
      box.value = kept;
      if (document.activeElement === box) box.setSelectionRange(kept.length, kept.length);
    }
    sentBody = draft = "";
  });

  document.addEventListener("DOMContentLoaded", function () {
    var toasts = document.getElementById("toasts");
    if (toasts && window.MutationObserver) new MutationObserver(expireToasts).observe(toasts, { childList: true });
    var main = document.querySelector(".detail-main");
    if (main && window.MutationObserver) new MutationObserver(quietOwnChange).observe(main, { childList: true });
    if (location.hash === "#comment-body" && document.getElementById("comment-body")) document.getElementById("comment-body").focus();
  });

  window.umsgTriage = { openPalette: openPalette, menu: menuFor, apply: apply };
})();
