// martyfx operations dashboard. Data comes only from this page's own
// endpoints: api/state (JSON), api/events (server-sent events) and
// api/graph; a module panel's row action calls the module's own admin route
// on this server. No framework, no network beyond them.
(function () {
  "use strict";

  var $ = function (id) { return document.getElementById(id); };
  var charts = {}; // key -> {plot, el, card}
  var panels = {}; // module panel name -> its elements and chart

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  function fmtDuration(s) {
    if (s === null || s === undefined || isNaN(s)) return "–";
    if (s === 0) return "0 s";
    if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms";
    if (s < 120) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
    if (d > 0) return d + "d " + (h % 24) + "h";
    if (h > 0) return h + "h " + (m % 60) + "m";
    return Math.floor(s % 60) ? m + "m " + Math.floor(s % 60) + "s" : m + "m";
  }

  function fmtNum(v, digits) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    if (Math.abs(v) >= 1000) return v.toFixed(0);
    return v.toFixed(digits === undefined ? 2 : digits);
  }

  function fmtPct(v) {
    if (v === null || v === undefined || isNaN(v)) return "–";
    return (v * 100).toFixed(v < 0.1 ? 2 : 1) + " %";
  }

  function fmtTime(iso) {
    if (!iso) return "–";
    var d = new Date(iso);
    return isNaN(d.getTime()) ? "–" : d.toLocaleTimeString();
  }

  function badge(status) {
    var s = String(status || "unknown").toLowerCase().replace(/[ _]/g, "-");
    return el("span", "badge s-" + s, status || "unknown");
  }

  // ---- header ----
  function renderHeader(st) {
    var svc = st.service || {};
    $("svc-name").textContent = svc.name || "service";
    document.title = (svc.name || "service") + " · martyfx dashboard";
    $("svc-version").textContent = svc.version || "";
    $("svc-env").textContent = svc.environment || "";
    $("svc-instance").textContent = svc.instance_id || "–";
    $("svc-uptime").textContent = fmtDuration(st.uptime_seconds);
    var probes = $("probes");
    clear(probes);
    ["startup", "liveness", "readiness"].forEach(function (k) {
      var v = st.probes && st.probes[k];
      if (!v) return;
      var b = badge(v);
      b.classList.add("probe");
      b.title = k + ": " + v;
      b.textContent = k + " " + v;
      probes.appendChild(b);
    });
  }

  // ---- health ----
  function renderHealth(st) {
    var panel = $("panel-health");
    if (!st.checks) { panel.hidden = true; return; }
    panel.hidden = false;
    var body = $("health-table").tBodies[0];
    clear(body);
    st.checks.forEach(function (c) {
      var tr = el("tr");
      tr.dataset.check = c.name;
      var name = el("td", null, c.name);
      if (c.critical) name.appendChild(el("small", "muted", " critical"));
      tr.appendChild(name);
      tr.appendChild(el("td", "muted", c.kinds));
      var s = el("td");
      s.appendChild(badge(c.status));
      tr.appendChild(s);
      tr.appendChild(el("td", "nw", c.last_run ? fmtDuration(c.duration_seconds) : "–"));
      var h = el("td");
      var strip = el("span", "strip");
      (c.history || []).forEach(function (x) {
        var i = el("i", "s-" + x);
        i.title = x;
        strip.appendChild(i);
      });
      h.appendChild(strip);
      tr.appendChild(h);
      var err = c.error || c.last_error || "";
      var e = el("td", c.error ? "err" : "muted", err || "–");
      if (!c.error && c.last_error && c.last_error_at) e.title = "at " + c.last_error_at;
      tr.appendChild(e);
      body.appendChild(tr);
    });
  }

  // ---- alerts ----
  function renderAlerts(st) {
    var panel = $("panel-alerts");
    if (st.rules < 0) { panel.hidden = true; return; }
    panel.hidden = false;
    $("alert-rules").textContent = "(" + st.rules + " rule" + (st.rules === 1 ? "" : "s") + ")";
    var list = $("alerts-list");
    clear(list);
    var alerts = st.alerts || [];
    $("alerts-none").hidden = alerts.length > 0;
    alerts.forEach(function (a) {
      var li = el("li");
      li.appendChild(badge(a.state));
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("b", null, a.rule));
      var sev = a.labels && a.labels.severity;
      if (sev) li.appendChild(el("span", "muted", " " + sev));
      var sum = a.annotations && a.annotations.summary;
      if (sum) li.appendChild(el("div", null, sum));
      li.appendChild(el("div", "muted", "value " + fmtNum(a.value, 3) + " · active since " + fmtTime(a.active_at)));
      list.appendChild(li);
    });
  }

  // ---- charts ----
  function chartWidth(node) {
    return Math.max(200, Math.floor(node.clientWidth || 300));
  }

  function makeRedChart(node) {
    var opts = {
      width: chartWidth(node), height: 150,
      legend: { show: true, live: false },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, rate: { auto: true, range: function (u, mn, mx) { return [0, Math.max(1, mx * 1.1)]; } },
        ms: { auto: true, range: function (u, mn, mx) { return [0, Math.max(1, mx * 1.1)]; } } },
      axes: [
        { size: 28 },
        { scale: "rate", size: 42, values: function (u, v) { return v.map(function (x) { return fmtNum(x, 1); }); } },
        { scale: "ms", side: 1, size: 46, grid: { show: false }, values: function (u, v) { return v.map(function (x) { return x + "ms"; }); } }
      ],
      series: [
        {},
        { label: "req/s", scale: "rate", stroke: "#2563eb", width: 2, fill: "rgba(37,99,235,0.08)" },
        { label: "errors/s", scale: "rate", stroke: "#dc2626", width: 1.5 },
        { label: "p50 ms", scale: "ms", stroke: "#16a34a", width: 1.5 },
        { label: "p99 ms", scale: "ms", stroke: "#d97706", width: 1.5, dash: [4, 3] }
      ]
    };
    return new uPlot(opts, [[], [], [], [], []], node);
  }

  function ms(v) { return v === null || v === undefined ? null : v * 1000; }

  function redData(times, s) {
    var p = s.points;
    var errs = p.rate.map(function (r, i) {
      var e = p.error_ratio[i];
      return r === null ? null : (e === null ? 0 : r * e);
    });
    return [times, p.rate, errs, p.p50.map(ms), p.p99.map(ms)];
  }

  function renderRED(kind, panelId, gridId, panel, times, windowSeconds) {
    var sec = $(panelId);
    if (!panel || !panel.present) { sec.hidden = true; return; }
    sec.hidden = false;
    var idle = sec.querySelector(".idle");
    idle.hidden = !panel.idle || panel.idle.length === 0;
    idle.textContent = panel.idle && panel.idle.length ? "No traffic yet: " + panel.idle.join(", ") : "";
    sec.querySelector(".window").textContent = "(last " + fmtDuration(windowSeconds) + ")";
    var grid = $(gridId);
    var seen = {};
    panel.series.forEach(function (s) {
      var id = kind + " " + s.key;
      seen[id] = true;
      var c = charts[id];
      if (!c) {
        var card = el("div", "red-card");
        card.dataset.key = s.key;
        card.appendChild(el("h4", null, s.key));
        var nums = el("div", "nums");
        card.appendChild(nums);
        var node = el("div", "chart");
        card.appendChild(node);
        grid.appendChild(card);
        c = charts[id] = { card: card, nums: nums, node: node, plot: makeRedChart(node) };
      }
      var w = s.window;
      clear(c.nums);
      [["rate", fmtNum(w.rate) + "/s", false], ["errors", fmtPct(w.error_ratio), w.error_ratio > 0],
        ["p50", fmtDuration(w.p50), false], ["p99", fmtDuration(w.p99), false], ["total", String(Math.round(s.total)), false]
      ].forEach(function (x) {
        var span = el("span", null, x[0] + " ");
        span.appendChild(el("b", x[2] ? "bad" : null, x[1]));
        c.nums.appendChild(span);
      });
      c.plot.setData(redData(times, s));
      var drawn = s.points.rate.filter(function (v) { return v !== null; }).length;
      c.card.dataset.points = String(drawn);
    });
    Object.keys(charts).forEach(function (id) {
      if (id.indexOf(kind + " ") === 0 && !seen[id]) {
        charts[id].plot.destroy();
        charts[id].card.remove();
        delete charts[id];
      }
    });
  }

  // ---- module panels (fxmonitor.AsPanel) ----
  var palette = ["#7c3aed", "#2563eb", "#16a34a", "#dc2626", "#d97706", "#0891b2"];

  function fmtStat(s) {
    if (s.kind === "seconds") return fmtDuration(s.value);
    if (s.kind === "rate") return fmtNum(s.value);
    return fmtNum(s.value, 0);
  }

  // panelSection builds a module panel's section, placed before the breakers.
  function panelSection(p) {
    var sec = el("section", "panel wide");
    sec.id = "panel-" + p.name;
    var h2 = el("h2", null, p.title + " ");
    var sub = el("small", "panel-sub");
    h2.appendChild(sub);
    sec.appendChild(h2);
    var top = el("div", "panel-top");
    var stats = el("dl", "stats");
    var chart = el("div", "chart");
    top.appendChild(stats);
    top.appendChild(chart);
    sec.appendChild(top);
    var box = el("div", "table-box");
    var h3 = el("h3");
    var title = el("span", "table-title");
    var count = el("span", "tag count");
    h3.appendChild(title);
    h3.appendChild(document.createTextNode(" "));
    h3.appendChild(count);
    box.appendChild(h3);
    var errP = el("p", "error");
    errP.hidden = true;
    box.appendChild(errP);
    var none = el("p", "muted none");
    box.appendChild(none);
    var scroll = el("div", "scroll");
    var table = el("table", "rows");
    table.appendChild(el("thead"));
    table.appendChild(el("tbody"));
    scroll.appendChild(table);
    box.appendChild(scroll);
    sec.appendChild(box);
    document.querySelector("main").insertBefore(sec, $("panel-breakers"));
    return { sec: sec, sub: sub, stats: stats, chart: chart, box: box, title: title, count: count,
      errP: errP, none: none, table: table, plot: null, plotKey: "", head: "" };
  }

  function renderPanels(st) {
    var seen = {};
    (st.panels || []).forEach(function (p) {
      seen[p.name] = true;
      var v = panels[p.name] || (panels[p.name] = panelSection(p));
      v.sub.textContent = p.subtitle ? "(" + p.subtitle + ")" : "";
      clear(v.stats);
      var charted = [];
      (p.stats || []).forEach(function (s, i) {
        v.stats.appendChild(el("dt", null, s.label));
        v.stats.appendChild(el("dd", null, fmtStat(s)));
        if (s.chart) charted.push({ s: s, color: s.color || palette[charted.length % palette.length] });
      });
      renderPanelChart(v, charted, st.times);
      renderPanelTable(v, p.table);
    });
    Object.keys(panels).forEach(function (name) {
      if (seen[name]) return;
      if (panels[name].plot) panels[name].plot.destroy();
      panels[name].sec.remove();
      delete panels[name];
    });
  }

  function renderPanelChart(v, charted, times) {
    v.chart.hidden = charted.length === 0;
    var key = charted.map(function (c) { return c.s.label + " " + c.color; }).join("|");
    if (v.plot && v.plotKey !== key) {
      v.plot.destroy();
      v.plot = null;
    }
    if (charted.length === 0) return;
    if (!v.plot) {
      var series = [{}].concat(charted.map(function (c) {
        return { label: c.s.label, scale: "n", stroke: c.color, width: 1.5 };
      }));
      series[1].width = 2;
      v.plot = new uPlot({
        width: chartWidth(v.chart), height: 150, legend: { show: true, live: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, n: { auto: true, range: function (u, mn, mx) { return [0, Math.max(1, mx * 1.1)]; } } },
        axes: [{ size: 28 }, { scale: "n", size: 42 }],
        series: series
      }, [[]].concat(charted.map(function () { return []; })), v.chart);
      v.plotKey = key;
    }
    v.plot.setData([times].concat(charted.map(function (c) { return c.s.points || []; })));
  }

  function renderPanelTable(v, t) {
    v.box.hidden = !t;
    if (!t) return;
    v.title.textContent = t.title || "";
    v.errP.hidden = !t.error;
    v.errP.textContent = t.error || "";
    var rows = t.rows || [];
    v.count.textContent = String(rows.length);
    v.none.textContent = t.empty || "Nothing to show.";
    v.none.hidden = rows.length > 0;
    var head = JSON.stringify([t.columns, !!t.action]);
    if (v.head !== head) {
      v.head = head;
      var thead = v.table.tHead;
      clear(thead);
      var tr = el("tr");
      t.columns.forEach(function (c) { tr.appendChild(el("th", null, c.title)); });
      if (t.action) tr.appendChild(el("th"));
      thead.appendChild(tr);
      clear(v.table.tBodies[0]);
    }
    // Rows are keyed and kept across updates, so a button is never
    // replaced under the pointer.
    var body = v.table.tBodies[0];
    var existing = {}, wanted = {};
    Array.prototype.forEach.call(body.rows, function (tr) { existing[tr.dataset.id] = tr; });
    var trs = rows.map(function (r) {
      var id = String(r[t.key]);
      wanted[id] = true;
      return existing[id] || tableRow(v, t, r, id);
    });
    Object.keys(existing).forEach(function (id) { if (!wanted[id]) existing[id].remove(); });
    trs.forEach(function (tr, i) {
      if (body.rows[i] !== tr) body.insertBefore(tr, body.rows[i] || null);
    });
  }

  function tableRow(v, t, r, id) {
    var tr = el("tr");
    tr.dataset.id = id;
    t.columns.forEach(function (c) {
      var x = r[c.field];
      if (c.format === "time") tr.appendChild(el("td", "nw", fmtTime(x)));
      else tr.appendChild(el("td", c.format === "error" ? "err" : null, x === undefined || x === null ? "–" : x));
    });
    if (t.action) {
      var td = el("td");
      var b = el("button", "action", t.action.label);
      b.type = "button";
      b.addEventListener("click", function () { act(v, t.action, id, b); });
      td.appendChild(b);
      tr.appendChild(td);
    }
    return tr;
  }

  // act calls the module's admin route: its path is from the admin server's
  // root, one level above this page.
  function act(v, a, id, button) {
    var label = button.textContent;
    button.disabled = true;
    button.textContent = a.label + "…";
    var url = "../" + a.path.replace(/^\//, "").replace("{id}", encodeURIComponent(id));
    fetch(url, { method: a.method || "POST", credentials: "same-origin" })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (body) {
          if (!r.ok) throw new Error(body.error || ("HTTP " + r.status));
        });
      })
      .then(refresh)
      .catch(function (e) {
        button.disabled = false;
        button.textContent = label;
        v.errP.hidden = false;
        v.errP.textContent = a.label + " " + id + ": " + e.message;
      });
  }

  // ---- breakers ----
  function renderBreakers(st) {
    var sec = $("panel-breakers");
    var bs = st.breakers || [];
    if (bs.length === 0) { sec.hidden = true; return; }
    sec.hidden = false;
    var body = $("breakers-table").tBodies[0];
    clear(body);
    bs.forEach(function (b) {
      var tr = el("tr");
      tr.appendChild(el("td", null, b.name));
      var s = el("td");
      s.appendChild(badge(b.state));
      tr.appendChild(s);
      tr.appendChild(el("td", null, b.requests));
      tr.appendChild(el("td", null, b.total_failures));
      tr.appendChild(el("td", null, b.consecutive_failures + " / " + b.trip_after_consecutive_failures));
      body.appendChild(tr);
    });
  }

  // ---- dependency graph ----
  var graphLoaded = false;
  function loadGraph(st) {
    if (graphLoaded) return;
    graphLoaded = true;
    var sec = $("panel-graph");
    if (!st.graph) { sec.hidden = true; return; }
    sec.hidden = false;
    var status = $("graph-status");
    if (typeof Viz === "undefined") { status.textContent = "Graph renderer missing."; return; }
    fetch("api/graph", { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(function (g) {
        return Viz.instance().then(function (viz) {
          var svg = viz.renderSVGElement(g.dot);
          svg.setAttribute("id", "graph-svg");
          var box = $("graph");
          clear(box);
          box.appendChild(svg);
          box.classList.add("fit");
          box.title = "Click to switch between fitted and full size";
          box.addEventListener("click", function () { box.classList.toggle("fit"); });
          status.textContent = svg.querySelectorAll("g.node").length + " nodes. Click the graph to zoom.";
        });
      })
      .catch(function (e) {
        status.textContent = "Could not render the graph: " + e.message;
        status.className = "error";
      });
  }

  // ---- state ----
  var last = null;
  function render(st) {
    last = st;
    renderHeader(st);
    renderHealth(st);
    renderAlerts(st);
    renderRED("http", "panel-http", "http-grid", st.http, st.times, st.window_seconds);
    renderRED("grpc", "panel-grpc", "grpc-grid", st.grpc, st.times, st.window_seconds);
    renderPanels(st);
    renderBreakers(st);
    loadGraph(st);
    document.body.dataset.updated = String(Date.now());
  }

  function refresh() {
    return fetch("api/state", { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
      .then(render);
  }

  function resize() {
    Object.keys(charts).forEach(function (id) {
      var c = charts[id];
      c.plot.setSize({ width: chartWidth(c.node), height: 150 });
    });
    Object.keys(panels).forEach(function (name) {
      var v = panels[name];
      if (v.plot) v.plot.setSize({ width: chartWidth(v.chart), height: 150 });
    });
  }
  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(resize, 150);
  });

  function connect() {
    var conn = $("conn");
    if (typeof EventSource === "undefined") {
      conn.textContent = "polling";
      setInterval(function () { refresh().catch(function () {}); }, 2000);
      return refresh().catch(function () {});
    }
    var es = new EventSource("api/events");
    es.addEventListener("state", function (e) {
      conn.textContent = "live";
      conn.classList.add("live");
      render(JSON.parse(e.data));
    });
    es.onerror = function () {
      conn.textContent = "reconnecting";
      conn.classList.remove("live");
    };
    window.addEventListener("pagehide", function () { es.close(); });
  }

  window.martyDashboard = { refresh: refresh, state: function () { return last; } };
  connect();
})();
