// Monitoring glue: the header summary and alert toasts on every staff page, live charts on /monitoring/.
//
// Frames come over the page's one socket (app.js), which hands the JSON ones over as
// "umsg:monitoring" events:
//   {"kind": "tick", "summary": html, "panels": html, "series": {...last hour...}}  every monitor tick,
//     rendered in the reader's language (on pages other than /monitoring/, the summary alone);
//     "panels" holds #monitor-top (verdict, stat cards) and #monitor-panels
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

  // One unit per chart, on its y axis and in its current value: counts per minute, demands,
  // seconds (every latency), messages.
  function chartSpecs() {
    var perMinute = gettext("/min"), seconds = gettext("s"), messages = gettext("msgs");
    return {
      flow: { unit: perMinute, counts: true, series: [
        { label: gettext("Arrivals"), key: "arrivals", color: cssVar("--blue-fg", "#1d4ed8") },
        { label: gettext("Resolutions"), key: "resolutions", color: cssVar("--green-fg", "#166534") },
        { label: gettext("Rejections"), key: "rejections", color: cssVar("--red-fg", "#b42318") }
      ] },
      backlog: { unit: "", series: [
        { label: gettext("New"), get: function (s) { return s.backlog["new"]; }, color: cssVar("--blue-fg", "#1d4ed8") },
        { label: gettext("Triaged"), get: function (s) { return s.backlog.triaged; }, color: cssVar("--violet-fg", "#5b21b6") },
        { label: gettext("In progress"), get: function (s) { return s.backlog.in_progress; }, color: cssVar("--amber-fg", "#8a4b00") },
        { label: gettext("Urgent"), get: function (s) { return s.backlog.urgent; }, color: cssVar("--red-solid", "#d92d20"), dash: [4, 3] }
      ] },
      ingest: { unit: seconds, series: [
        { label: gettext("p50"), key: "ingest_p50", color: cssVar("--blue-fg", "#1d4ed8") },
        { label: gettext("p95"), key: "ingest_p95", color: cssVar("--orange-fg", "#9a3412") }
      ] },
      first_action: { unit: seconds, series: [
        { label: gettext("p50"), key: "first_action_p50", color: cssVar("--green-fg", "#166534") },
        { label: gettext("p95"), key: "first_action_p95", color: cssVar("--orange-fg", "#9a3412") }
      ] },
      lag: { unit: messages, series: [
        { label: gettext("Lag (messages)"), key: "lag", color: cssVar("--violet-fg", "#5b21b6") }
      ] }
    };
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  // Local time, 24-hour clock; the date too when the view spans more than a day.
  function timeLabel(ts, withDate) {
    var d = new Date(ts * 1000);
    var hm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    return withDate ? pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + hm : hm;
  }

  function number(value) {
    if (value === null || value === undefined) return "—";
    var abs = Math.abs(value);
    if (abs >= 10000) return Math.round(value).toLocaleString();
    if (abs >= 10) return String(Math.round(value * 10) / 10);
    return String(Math.round(value * 100) / 100);
  }

  function withUnit(value, unit) {
    return unit ? number(value) + " " + unit : number(value);
  }

  function dataFor(spec, series) {
    var data = [series.t];
    spec.series.forEach(function (s) { data.push(s.get ? s.get(series) : series[s.key]); });
    return data;
  }

  // The first minute with something to show: the axis starts there, not at the range's start
  // (a 7-day view of two hours of data was 99 % empty). Counts are 0 where nothing happened.
  function zoomed(data, counts) {
    var first = -1;
    for (var i = 0; i < data[0].length && first < 0; i++) {
      for (var k = 1; k < data.length; k++) {
        var v = data[k][i];
        if (v !== null && v !== undefined && (!counts || v !== 0)) { first = i; break; }
      }
    }
    if (first < 0) first = Math.max(data[0].length - 60, 0);
    first = Math.max(Math.min(first, data[0].length - 10), 0);
    return data.map(function (column) { return column.slice(first); });
  }

  function lastValue(column) {
    for (var i = column.length - 1; i >= 0; i--) if (column[i] !== null && column[i] !== undefined) return column[i];
    return null;
  }

  function showCurrent(name, spec, data) {
    var el = document.querySelector('#monitor-charts [data-now="' + name + '"]');
    if (!el) return;
    el.textContent = spec.series.map(function (s, i) {
      return s.label + " " + withUnit(lastValue(data[i + 1]), spec.unit);
    }).join(" · ");
  }

  // Shades periods without a consumer or with the broker unreachable (series.outages).
  function outagePlugin() {
    return { hooks: { drawClear: [function (u) {
      var spans = (seriesCache && seriesCache.outages) || [];
      if (!spans.length) return;
      var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
      ctx.save();
      spans.forEach(function (span) {
        var x0 = Math.max(u.valToPos(span[0], "x", true), u.bbox.left);
        var x1 = Math.min(u.valToPos(span[1], "x", true), u.bbox.left + u.bbox.width);
        if (x1 <= x0) return;
        ctx.fillStyle = span[2] === "broker" ? "rgba(217, 45, 32, 0.13)" : "rgba(138, 75, 0, 0.12)";
        ctx.fillRect(x0, top, x1 - x0, height);
      });
      ctx.restore();
    }] } };
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
      var data = zoomed(dataFor(spec, series), spec.counts);
      showCurrent(name, spec, data);
      var span = data[0].length ? data[0][data[0].length - 1] - data[0][0] : 0;
      if (charts[name]) { charts[name].multiDay = span > 86400; charts[name].setData(data); return; }
      var axis = { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
      var chart = null;
      var xAxis = Object.assign({}, axis, {
        values: function (u, splits) { return splits.map(function (ts) { return timeLabel(ts, chart && chart.multiDay); }); }
      });
      var yAxis = Object.assign({}, axis, {
        size: 64, label: spec.unit || gettext("demands"), labelSize: 18,
        values: function (u, splits) { return splits.map(function (v) { return number(v); }); }
      });
      chart = charts[name] = new window.uPlot({
        width: Math.max(el.clientWidth, 200),
        height: 180,
        scales: { x: { time: true }, y: { range: function (u, min, max) {
          // From 0; with no data (or only zeros) a 0–1 axis rather than ticks that all read "0".
          return [Math.min(0, min || 0), max ? max * 1.1 : 1];
        } } },
        axes: [xAxis, yAxis],
        legend: { live: true },
        plugins: [outagePlugin()],
        series: [{ label: gettext("Time"), value: function (u, ts) { return ts === null ? "—" : timeLabel(ts, true); } }].concat(spec.series.map(function (s) {
          return {
            label: s.label, stroke: s.color, width: 1.5, dash: s.dash, spanGaps: false,  // uPlot shows points only where sparse
            value: function (u, v) { return withUnit(v, spec.unit); }
          };
        }))
      }, data, el);
      chart.multiDay = span > 86400;  // (no redraw here: uPlot's first commit is still pending)
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
      if (frame.panels) {
        // The verdict and stat cards (above the charts) and the panels (below), in the reader's language.
        var template = document.createElement("template");
        template.innerHTML = frame.panels.trim();
        ["monitor-top", "monitor-panels"].forEach(function (id) {
          var shown = document.getElementById(id);
          var fresh = template.content.getElementById(id);
          if (shown && fresh) shown.replaceWith(fresh);
        });
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
