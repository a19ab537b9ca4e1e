/*!
 * Unified Message Platform · 统一消息平台 — feedback widget. No dependencies.
 *
 * Include it on any page:
 *   <script src="https://umsg.example.com/static/widget/feedback.js" defer
 *           data-endpoint="https://umsg.example.com/api/ingest/"
 *           data-key="umk_…" data-source="web_app"></script>
 * Optional: data-type (default user_feedback), data-lang ("zh" or "en"; default: the browser's),
 * data-position ("right" or "left").
 *
 * It adds a small "Feedback / 反馈" button; the form posts one demand to the ingest endpoint:
 *   {id, type, source, content, timestamp, page, language[, contact]}
 * The key is visible to anyone who views the page, so give the widget its own key: bound to its
 * source, rate limited, allowed only from your site's origin, and revocable in the admin.
 * window.UmsgFeedback.open() / .close() open and close the form from the page's own code.
 */
(function () {
  "use strict";

  var script = document.currentScript;
  if (!script) return;
  var data = script.dataset;
  var config = {
    endpoint: data.endpoint,
    key: data.key,
    source: data.source || "",
    type: data.type || "user_feedback",
    lang: (data.lang || navigator.language || "en").toLowerCase().indexOf("zh") === 0 ? "zh" : "en",
    position: data.position === "left" ? "left" : "right",
  };
  if (!config.endpoint || !config.key) {
    console.error("feedback.js: data-endpoint and data-key are required");
    return;
  }

  var MAX_CHARS = 5000;
  var TEXT = {
    zh: {
      button: "反馈", title: "意见反馈", label: "您遇到了什么问题,或有什么建议?",
      placeholder: "例如:页面加载太慢,请优化。", contact: "联系方式(选填)", send: "提交", cancel: "取消",
      close: "关闭", sending: "提交中…", thanks: "感谢您的反馈!我们已收到。", empty: "请先填写反馈内容。",
      network: "网络错误,请稍后重试。", rate: "提交过于频繁,请 {s} 秒后重试。", failed: "提交失败:{reason}",
    },
    en: {
      button: "Feedback", title: "Send feedback", label: "What went wrong, or what would you like?",
      placeholder: "e.g. The page loads too slowly.", contact: "Contact (optional)", send: "Send", cancel: "Cancel",
      close: "Close", sending: "Sending…", thanks: "Thank you! We received your feedback.", empty: "Please write something first.",
      network: "Network error — please try again.", rate: "Too many submissions — try again in {s}s.", failed: "Could not send: {reason}",
    },
  }[config.lang];

  var CSS = [
    ":host { all: initial; }",
    "* { box-sizing: border-box; font-family: system-ui, -apple-system, 'Segoe UI', 'PingFang SC', 'Microsoft YaHei', sans-serif; }",
    ".launcher { position: fixed; bottom: 20px; " + config.position + ": 20px; z-index: 2147483000; border: 0; border-radius: 999px;",
    "  padding: 10px 16px; background: #2563eb; color: #fff; font-size: 14px; font-weight: 600; cursor: pointer;",
    "  box-shadow: 0 4px 14px rgb(0 0 0 / .2); }",
    ".launcher:hover { background: #1d4ed8; }",
    ".launcher:focus-visible, button:focus-visible, textarea:focus-visible, input:focus-visible { outline: 2px solid #93c5fd; outline-offset: 2px; }",
    ".panel { position: fixed; bottom: 72px; " + config.position + ": 20px; z-index: 2147483001; width: min(360px, calc(100vw - 40px));",
    "  background: #fff; color: #111827; border: 1px solid #e5e7eb; border-radius: 12px; padding: 16px;",
    "  box-shadow: 0 12px 32px rgb(0 0 0 / .18); font-size: 14px; }",
    ".panel[hidden] { display: none; }",
    "h2 { margin: 0 0 10px; font-size: 16px; display: flex; justify-content: space-between; align-items: center; }",
    ".x { border: 0; background: none; font-size: 20px; line-height: 1; cursor: pointer; color: #6b7280; }",
    "label { display: block; margin: 8px 0 4px; font-size: 13px; color: #374151; }",
    "textarea, input { width: 100%; border: 1px solid #d1d5db; border-radius: 8px; padding: 8px; font-size: 14px; color: inherit; background: #fff; }",
    "textarea { min-height: 110px; resize: vertical; }",
    ".actions { display: flex; gap: 8px; justify-content: flex-end; margin-top: 12px; }",
    ".actions button { border-radius: 8px; padding: 8px 14px; font-size: 14px; cursor: pointer; border: 1px solid #d1d5db; background: #fff; color: #111827; }",
    ".actions .send { background: #2563eb; border-color: #2563eb; color: #fff; font-weight: 600; }",
    ".actions .send:disabled { opacity: .6; cursor: progress; }",
    ".status { margin: 10px 0 0; min-height: 1em; font-size: 13px; }",
    ".status.ok { color: #15803d; } .status.error { color: #b91c1c; }",
    "@media (prefers-color-scheme: dark) {",
    "  .panel { background: #1f2937; color: #f9fafb; border-color: #374151; }",
    "  label { color: #d1d5db; } textarea, input, .actions button { background: #111827; color: #f9fafb; border-color: #4b5563; }",
    "  .status.ok { color: #4ade80; } .status.error { color: #f87171; }",
    "}",
  ].join("\n");

  function newId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    (window.crypto || { getRandomValues: function (b) { for (var i = 0; i < b.length; i++) b[i] = Math.random() * 256; return b; } })
      .getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text) node.textContent = text;  // textContent only: nothing from the server becomes HTML
    return node;
  }

  function mount() {
    var host = el("div", { "data-umsg-feedback": "" });
    var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    var style = el("style");
    style.textContent = CSS;

    var launcher = el("button", { type: "button", class: "launcher", "aria-haspopup": "dialog", "aria-expanded": "false" }, TEXT.button);
    var panel = el("form", { class: "panel", role: "dialog", "aria-labelledby": "umsg-fb-title", hidden: "", novalidate: "" });
    var heading = el("h2", { id: "umsg-fb-title" }, TEXT.title);
    var closeButton = el("button", { type: "button", class: "x", "aria-label": TEXT.close }, "×");
    heading.appendChild(closeButton);
    var text = el("textarea", { id: "umsg-fb-content", name: "content", maxlength: String(MAX_CHARS), placeholder: TEXT.placeholder, required: "" });
    var contact = el("input", { id: "umsg-fb-contact", name: "contact", type: "text", maxlength: "200", autocomplete: "email" });
    var actions = el("div", { class: "actions" });
    var cancel = el("button", { type: "button", class: "cancel" }, TEXT.cancel);
    var send = el("button", { type: "submit", class: "send" }, TEXT.send);
    actions.append(cancel, send);
    var status = el("p", { class: "status", role: "status", "aria-live": "polite" });
    panel.append(heading, el("label", { for: "umsg-fb-content" }, TEXT.label), text,
      el("label", { for: "umsg-fb-contact" }, TEXT.contact), contact, actions, status);
    root.append(style, launcher, panel);
    document.body.appendChild(host);

    // One id per piece of feedback: a retry after a lost answer re-sends the same id, and the
    // platform stores a (source, id) pair once, so nothing is counted twice.
    var pending = null;

    function say(message, kind) {
      status.textContent = message;
      status.className = "status" + (kind ? " " + kind : "");
    }
    function open() {
      panel.hidden = false;
      launcher.setAttribute("aria-expanded", "true");
      text.focus();
    }
    function close() {
      panel.hidden = true;
      launcher.setAttribute("aria-expanded", "false");
      launcher.focus();
    }

    launcher.addEventListener("click", function () { panel.hidden ? open() : close(); });
    closeButton.addEventListener("click", close);
    cancel.addEventListener("click", close);
    panel.addEventListener("keydown", function (event) { if (event.key === "Escape") close(); });

    panel.addEventListener("submit", function (event) {
      event.preventDefault();
      var content = text.value.trim();
      if (!content) { say(TEXT.empty, "error"); text.focus(); return; }
      if (!pending || pending.content !== content || pending.contact !== contact.value.trim()) {
        pending = { id: newId(), content: content, contact: contact.value.trim(), timestamp: new Date().toISOString() };
      }
      var demand = {
        id: pending.id, type: config.type, content: content, timestamp: pending.timestamp,
        page: location.origin + location.pathname, language: navigator.language || "",
      };
      if (config.source) demand.source = config.source;
      if (pending.contact) demand.contact = pending.contact;

      send.disabled = true;
      say(TEXT.sending);
      fetch(config.endpoint, {
        method: "POST", mode: "cors", credentials: "omit",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + config.key },
        body: JSON.stringify(demand),
      }).then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (response.status === 202 && body.accepted && body.accepted.length) {
            pending = null;
            text.value = "";
            say(TEXT.thanks, "ok");
            return;
          }
          if (response.status === 429) {
            say(TEXT.rate.replace("{s}", response.headers.get("Retry-After") || "60"), "error");
            return;
          }
          var reason = (body.rejected && body.rejected[0] && body.rejected[0].reason) || body.error || ("HTTP " + response.status);
          say(TEXT.failed.replace("{reason}", reason), "error");
        });
      }).catch(function () {
        say(TEXT.network, "error");
      }).then(function () {
        send.disabled = false;
      });
    });

    window.UmsgFeedback = { open: open, close: close };
  }

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
