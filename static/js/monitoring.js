// Monitoring glue: the header summary and alert toasts on every staff page, live charts on /monitoring/.
//
// Frames come over the page's one socket (app.js), which hands the JSON ones over as
// "umsg:monitoring" events:
//   {"kind": "tick", "summary": html, "panels": html, "series": {...last hour...}}  every monitor tick
//     (on pages other than /monitoring/, the summary alone)
//   {"kind": "alert", "event": "firing|renotify|resolved", "severity", "title", "html"}
// A tick after a reconnect repaints all. Text comes from Django's JavaScript catalog (jsi18n).
(function () {
  "use strict";

  var gettext = window.gettext || function (text) { return text; };
  var charts = {};
  var seriesCache = null;

  // -- toasts ----------------------------------------------------------------------------------
  function toast(html, severity) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    var node = template.content.firstElementChild;
    if (!node) return;
    box.appendChild(node);
    var ttl = severity === "critical" ? 20000 : 8000;
    setTimeout(function () { node.remove(); }, ttl);
    node.addEventListener("click", function (e) { if (e.target.tagName !== "A") node.remove(); });
  }

  // -- charts (uPlot, vendored) ------------------------------------------------------------------
  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name);
    return (value && value.trim()) || fallback;
  }

  function chartSpecs() {
    return {
      flow: { series: [
        { label: gettext("Arrivals"), key: "arrivals", color: cssVar("--blue-fg", "#1d4ed8") },
        { label: gettext("Resolutions"), key: "resolutions", color: cssVar("--green-fg", "#166534") },
        { label: gettext("Rejections"), key: "rejections", color: cssVar("--red-fg", "#b42318") }
      ] },
      backlog: { series: [
        { label: gettext("New"), get: function (s) { return s.backlog["new"]; }, color: cssVar("--blue-fg", "#1d4ed8") },
        { label: gettext("Triaged"), get: function (s) { return s.backlog.triaged; }, color: cssVar("--violet-fg", "#5b21b6") },
        { label: gettext("In progress"), get: function (s) { return s.backlog.in_progress; }, color: cssVar("--amber-fg", "#8a4b00") },
        { label: gettext("Urgent"), get: function (s) { return s.backlog.urgent; }, color: cssVar("--red-solid", "#d92d20"), dash: [4, 3] }
      ] },
      ingest: { series: [
        { label: "p50", key: "ingest_p50", color: cssVar("--blue-fg", "#1d4ed8") },
        { label: "p95", key: "ingest_p95", color: cssVar("--orange-fg", "#9a3412") }
      ] },
      first_action: { series: [
        { label: "p50", key: "first_action_p50", color: cssVar("--green-fg", "#166534") },
        { label: "p95", key: "first_action_p95", color: cssVar("--orange-fg", "#9a3412") }
      ] },
      lag: { series: [
        { label: gettext("Lag (messages)"), key: "lag", color: cssVar("--violet-fg", "#5b21b6") }
      ] }
    };
  }

  function dataFor(spec, series) {
    var data = [series.t];
    spec.series.forEach(function (s) { data.push(s.get ? s.get(series) : series[s.key]); });
    return data;
  }

  function drawCharts(series) {
    if (!window.uPlot) return;
    seriesCache = series;
    var specs = chartSpecs();
    var grid = cssVar("--border", "#e3e3e8");
    var text = cssVar("--muted", "#6a6a75");
    document.querySelectorAll("#monitor-charts .chart[data-chart]").forEach(function (el) {
      var name = el.dataset.chart;
      var spec = specs[name];
      if (!spec) return;
      var data = dataFor(spec, series);
      if (charts[name]) { charts[name].setData(data); return; }
      var axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
      charts[name] = new window.uPlot({
        width: Math.max(el.clientWidth, 200),
        height: 180,
        scales: { x: { time: true } },
        axes: [axis, Object.assign({}, axis, { size: 50 })],
        legend: { live: true },
        series: [{}].concat(spec.series.map(function (s) {
          return { label: s.label, stroke: s.color, width: 1.5, dash: s.dash, spanGaps: false, points: { show: false } };
        }))
      }, data, el);
    });
  }

  function resizeCharts() {
    Object.keys(charts).forEach(function (name) {
      var el = document.querySelector('#monitor-charts .chart[data-chart="' + name + '"]');
      if (el) charts[name].setSize({ width: Math.max(el.clientWidth, 200), height: 180 });
    });
  }

  function refreshSeries(pushed) {
    var box = document.getElementById("monitor-charts");
    if (!box) return;
    var minutes = parseInt(box.dataset.minutes || "60", 10);
    if (minutes === 60 && pushed) { drawCharts(pushed); return; }
    // Longer ranges are not pushed (they would be large): fetch them when a tick says there is news.
    fetch(box.dataset.seriesUrl + "?minutes=" + minutes, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (series) { if (series) drawCharts(series); })
      .catch(function () {});
  }

  // -- frames ----------------------------------------------------------------------------------------
  function onFrame(frame) {
    if (frame.kind === "tick") {
      var slot = document.getElementById("monitor-summary");
      if (slot && frame.summary) slot.innerHTML = frame.summary;
      var panels = document.getElementById("monitor-panels");
      if (panels && frame.panels) {
        var template = document.createElement("template");
        template.innerHTML = frame.panels.trim();
        var fresh = template.content.getElementById("monitor-panels");
        if (fresh) panels.replaceWith(fresh);
      }
      refreshSeries(frame.series);
    } else if (frame.kind === "alert") {
      toast(frame.html, frame.severity);
    }
  }

  document.addEventListener("umsg:monitoring", function (event) { onFrame(event.detail); });

  document.addEventListener("DOMContentLoaded", function () {
    var initial = document.getElementById("monitor-series");
    if (initial) {
      try { drawCharts(JSON.parse(initial.textContent)); } catch (e) { /* charts stay empty */ }
      window.addEventListener("resize", function () { clearTimeout(resizeCharts.t); resizeCharts.t = setTimeout(resizeCharts, 150); });
    }
  });

  window.umsgMonitoring = { onFrame: onFrame, charts: charts, series: function () { return seriesCache; } };
})();
