/* The wall display: draws the panels, keeps them live over Socket.IO, and recovers by itself.
 *
 * No inline script (the CSP forbids it): the page gives its URLs in data-* attributes of #wall and each
 * panel carries its figures in a <script type="application/json" class="panel-data"> block.
 *
 * - A panel is refreshed by re-reading its own fragment route with htmx (outerHTML swap). Plot containers
 *   carry hx-preserve, so a refresh keeps the Plotly graph (and the map's zoom) and only Plotly.react runs.
 * - Pushes come as one "batch" per tick (1 s) for the wall's room, carrying its "case" and "alert" items
 *   and the counter deltas of its place: the items update the map at once, and the panels concerned are
 *   asked for once per batch, at most once every 2 s per panel (the map's grid colours every 10 s, the
 *   rankings every 30 s).
 * - Each batch carries `seq`, numbered per room (the wall's own place): a gap, a reset, a reconnect or a
 *   recovery after an outage re-reads every panel;
 *   every panel is re-read every 5 minutes anyway, and /healthz is polled every 15 s.
 * - Nothing grows with time: at most MAX_POINTS points are kept (today's open cases), listeners and
 *   timers are set up once, and the graphs are updated in place with Plotly.react.
 */
(function () {
  "use strict";

  var root = document.getElementById("wall");
  if (!root || !window.Plotly || !window.htmx) { return; }

  var TZ = root.dataset.tz || "Asia/Shanghai";
  var PANEL_URL = root.dataset.panelUrl;
  var GEO_URL = root.dataset.geojsonUrl;
  var HEALTH_URL = root.dataset.healthUrl;
  var MAX_POINTS = parseInt(root.dataset.maxPoints, 10) || 5000;

  var MIN_INTERVAL = { map: 10000, rankings: 30000 }; // others: DEFAULT_INTERVAL
  var DEFAULT_INTERVAL = 2000;
  var FULL_REFRESH_MS = 5 * 60 * 1000;
  var PRESENCE_REFRESH_MS = 60 * 1000;
  var HEALTH_MS = 15000;
  var HEALTH_TIMEOUT_MS = 5000;
  var HIGHLIGHT_MS = 12000;
  var BANNER_GRACE_MS = 1500;
  var RESYNC_MIN_MS = 10000;
  var FRESH_ALERT_MS = 120000;

  var BLANK_STYLE = {
    id: "blank", version: 8, sources: {},
    layers: [{ id: "bg", type: "background", paint: { "background-color": "#07121f" } }]
  };
  // the city's basemap (/admin/map, commandcenter/basemap.py client_style): blank, a style URL, or local tiles
  var MAP_STYLE = basemapStyle(root.dataset.basemap);
  var CONFIG = { displaylogo: false, showSendToCloud: false, typesetMath: false, responsive: true, displayModeBar: false };
  var FONT = "\"Noto Sans CJK SC\", \"WenQuanYi Micro Hei\", \"Microsoft YaHei\", \"PingFang SC\", sans-serif";
  var KINDS = ["ordinary", "hazard", "dispute"];
  var KIND_COLOR = { ordinary: "#38bdf8", hazard: "#f59e0b", dispute: "#c084fc" };
  var KIND_LABEL = { ordinary: "普通事件", hazard: "安全隐患", dispute: "矛盾纠纷" };
  var FINAL_STATES = { closed: true, rejected: true, duplicate: true };
  // the positions layer (commandcenter/positions.py): the viewer's own gridworkers, polled
  var POS_URL = GEO_URL ? GEO_URL.replace(/geojson$/, "positions") : null;
  var POSITIONS_MS = 30000;
  var PERSON_STATES = ["offline", "online", "patrolling"]; // drawn in this order: patrolling on top
  var PERSON_COLOR = { patrolling: "#22c55e", online: "#f8fafc", offline: "#64748b" };
  var PERSON_LABEL = { patrolling: "巡查中", online: "在线", offline: "离线" };

  var banner = document.getElementById("wall-banner");
  var linkState = document.getElementById("wall-link");
  var updatedAt = document.getElementById("wall-updated");
  var clock = document.getElementById("wall-clock");

  var state = {
    lastSeq: null, socketUp: false, healthUp: true, everConnected: false,
    bannerTimer: null, lastResync: 0, resyncTimer: null, lastRefreshAll: 0,
    geo: null, geoEtag: null, geoLoading: null,
    map: null, gridIndex: new Map(), alertGrids: new Set(),
    points: new Map(), // case id → {id, lat, lon, kind, flag (2 alert, 1 overdue), number, category, grid, hl, pushedAt}
    charts: {}, drawTimer: null, hlTimer: null,
    freshAlerts: new Map(), // alert id → time received
    clockOffset: (parseInt(root.dataset.now, 10) || Date.now()) - Date.now(), // server clock − this PC's clock
    sessionLost: false,
    people: [], positionsOff: false,
    batches: 0, lagMs: null, flushLagMs: null // batches received; the newest case's commit → here, → its flush (ms)
  };
  var panels = {}; // name → {last, timer, inflight, again}

  // --- formatting --------------------------------------------------------------------------------------

  var hmsFormat = new Intl.DateTimeFormat("zh-CN", { timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  var dateFormat = new Intl.DateTimeFormat("zh-CN", { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit" });

  function fmtTime(date) { return hmsFormat.format(date); }
  function fmtDateTime(date) { return dateFormat.format(date).replace(/\//g, "-") + " " + hmsFormat.format(date); }
  function pad(n) { return n < 10 ? "0" + n : String(n); }
  function fmtLeft(seconds) { // the same format as views.fmt_left
    var past = seconds < 0;
    var s = Math.floor(Math.abs(seconds));
    var days = Math.floor(s / 86400), hours = Math.floor((s % 86400) / 3600);
    var minutes = Math.floor((s % 3600) / 60), secs = s % 60;
    var body = days ? days + "天" + hours + "时" : hours ? hours + "时" + pad(minutes) + "分" : pad(minutes) + ":" + pad(secs);
    return (past ? "超时 " : "剩 ") + body;
  }
  function scale() { return Math.max(0.5, Math.min(window.innerHeight / 1080, window.innerWidth / 1920)); }
  function px(n) { return Math.round(n * scale()); }
  function baseLayout() {
    return {
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
      font: { family: FONT, color: "#e6eef7", size: px(13) },
      hoverlabel: { font: { family: FONT, size: px(15) } }
    };
  }
  function serverNow() { return new Date(Date.now() + state.clockOffset); }
  function markUpdated() { if (updatedAt) { updatedAt.textContent = fmtTime(serverNow()); } }
  function readData(section) {
    var el = section && section.querySelector("script.panel-data");
    if (!el) { return null; }
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  // --- refreshing panels (htmx) ------------------------------------------------------------------------

  function panelState(name) {
    if (!panels[name]) { panels[name] = { last: 0, timer: null, inflight: false, again: false }; }
    return panels[name];
  }

  function load(name) {
    var p = panelState(name);
    var target = document.getElementById("panel-" + name);
    if (!target) { return; }
    if (p.inflight) { p.again = true; return; }
    p.inflight = true;
    p.last = Date.now();
    var finish = function () {
      p.inflight = false;
      if (p.again) { p.again = false; refresh(name); }
    };
    htmx.ajax("GET", PANEL_URL.replace("NAME", name), { source: target, target: target, swap: "outerHTML" })
      .then(finish, finish);
  }

  /* Ask for a panel: now if it has not been read for its minimum interval, else once at the end of it. */
  function refresh(name) {
    var p = panelState(name);
    if (p.inflight) { p.again = true; return; }
    if (p.timer) { return; }
    var wait = Math.max(0, p.last + (MIN_INTERVAL[name] || DEFAULT_INTERVAL) - Date.now());
    p.timer = setTimeout(function () { p.timer = null; load(name); }, wait);
  }

  function refreshAll() {
    if (Date.now() - state.lastRefreshAll < 1000) { return; } // a reconnect and a recovery at once: one re-read
    state.lastRefreshAll = Date.now();
    loadGeo();
    var sections = document.querySelectorAll("section.panel[data-panel]");
    for (var i = 0; i < sections.length; i++) {
      var name = sections[i].dataset.panel;
      var p = panelState(name);
      if (p.timer) { clearTimeout(p.timer); p.timer = null; }
      load(name);
    }
  }

  /* A gap in the sequence: re-read everything, but not more than once every RESYNC_MIN_MS. */
  function resync() {
    var wait = state.lastResync + RESYNC_MIN_MS - Date.now();
    if (wait <= 0) {
      state.lastResync = Date.now();
      refreshAll();
    } else if (!state.resyncTimer) {
      state.resyncTimer = setTimeout(function () {
        state.resyncTimer = null;
        state.lastResync = Date.now();
        refreshAll();
      }, wait);
    }
  }

  function noteSeq(seq) {
    if (!seq) { resync(); return; } // pushed without a number (Redis was down): we cannot know what we missed
    var last = state.lastSeq;
    if (last !== null) {
      if (seq > last + 1) { resync(); } // missed something
      else if (seq < last - 100) { resync(); state.lastSeq = seq; return; } // the server's counter restarted
    }
    state.lastSeq = last === null ? seq : Math.max(last, seq);
  }

  document.body.addEventListener("htmx:beforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || !target.classList || !target.classList.contains("panel")) { return; }
    var xhr = evt.detail.xhr;
    if (!xhr || !xhr.getResponseHeader("X-Wall-Panel")) {
      evt.detail.shouldSwap = false; // never swap a login page or an error page into a panel
      if (xhr && xhr.status === 200 && /\/(login|password)\b/.test(xhr.responseURL || "") && !state.sessionLost) {
        state.sessionLost = true; // the session ended, or its password must change: show that page
        window.location.reload();
      }
    }
  });

  htmx.onLoad(function (elt) {
    if (elt && elt.classList && elt.classList.contains("panel")) {
      drawPanel(elt);
      markUpdated();
    }
  });

  // --- drawing -------------------------------------------------------------------------------------------

  function drawPanel(section) {
    var name = section.dataset.panel;
    var data = readData(section);
    if (name === "alerts") { onTicker(section); return; }
    if (!data) { return; } // "unavailable": the preserved graph keeps the last figures
    if (name === "map") { setMapData(data); drawMapSoon(); }
    else if (name === "counts") { state.charts.counts = data; drawHourly(); }
    else if (name === "attendance") { state.charts.attendance = data; drawAttendance(); }
  }

  function drawHourly() {
    var el = document.getElementById("plot-hourly");
    var d = state.charts.counts;
    if (!el || !d) { return; }
    var hours = [];
    for (var h = 0; h < 24; h++) { hours.push(h); }
    var layout = baseLayout();
    layout.margin = { l: px(34), r: px(8), t: px(22), b: px(24) };
    layout.barmode = "overlay";
    layout.showlegend = true;
    layout.legend = { orientation: "h", x: 0, y: 1.18, font: { size: px(12) }, bgcolor: "rgba(0,0,0,0)" };
    layout.xaxis = { range: [-0.6, 23.6], tickvals: [0, 3, 6, 9, 12, 15, 18, 21], ticktext: ["0时", "3时", "6时", "9时", "12时", "15时", "18时", "21时"],
      color: "#8aa4bf", tickfont: { size: px(11) }, fixedrange: true };
    layout.yaxis = { rangemode: "tozero", gridcolor: "#1d3a5a", color: "#8aa4bf", tickfont: { size: px(11) }, fixedrange: true };
    layout.uirevision = "hourly";
    Plotly.react(el, [
      { type: "bar", name: "今日", x: hours.slice(0, d.today.length), y: d.today, marker: { color: "#38bdf8" },
        hovertemplate: "今日 %{x}时：%{y} 件<extra></extra>" },
      { type: "scatter", mode: "lines+markers", name: "上周同日", x: hours, y: d.last_week,
        line: { color: "#f2c94c", width: px(2), dash: "dot" }, marker: { size: px(4) },
        hovertemplate: "上周同日 %{x}时：%{y} 件<extra></extra>" }
    ], layout, CONFIG);
  }

  function drawAttendance() {
    var el = document.getElementById("plot-attendance");
    var d = state.charts.attendance;
    if (!el || !d) { return; }
    var layout = baseLayout();
    layout.margin = { l: px(8), r: px(8), t: px(24), b: px(20) };
    layout.barmode = "overlay"; // one row per unit: the attendance bar, the online bar drawn inside it
    layout.bargap = 0.18;
    layout.showlegend = true;
    layout.legend = { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", font: { size: px(12) }, traceorder: "normal" };
    layout.xaxis = { range: [0, 114], ticksuffix: "%", tickvals: [0, 25, 50, 75, 100], gridcolor: "#1d3a5a", color: "#8aa4bf",
      tickfont: { size: px(11) }, fixedrange: true };
    layout.yaxis = { autorange: "reversed", automargin: true, color: "#e6eef7", tickfont: { size: px(d.names.length > 12 ? 13 : 15) }, fixedrange: true };
    layout.shapes = [{ type: "line", xref: "x", yref: "paper", x0: d.threshold, x1: d.threshold, y0: 0, y1: 1,
      line: { color: "#ff4d4f", width: px(2), dash: "dash" } }];
    layout.uirevision = "attendance";
    var colors = d.low.map(function (low) { return low ? "#ff4d4f" : "#34d399"; });
    Plotly.react(el, [
      { type: "bar", orientation: "h", name: "出勤率（今日签到 ÷ 在册）", y: d.names, x: d.attendance, width: 0.8,
        marker: { color: colors, opacity: 0.9 },
        text: d.attendance.map(function (v) { return v.toFixed(1) + "%"; }), textposition: "outside", cliponaxis: false,
        textfont: { size: px(12), color: "#e6eef7" }, customdata: d.label, hovertemplate: "%{y}<br>出勤率 %{x:.2f}%<br>%{customdata}<extra></extra>" },
      { type: "bar", orientation: "h", name: "在线率", y: d.names, x: d.online, width: 0.34, marker: { color: "#38bdf8" },
        customdata: d.label, hovertemplate: "%{y}<br>在线率 %{x:.2f}%<br>%{customdata}<extra></extra>" }
    ], layout, CONFIG);
  }

  // --- the map ---------------------------------------------------------------------------------------------

  function loadGeo() {
    if (state.geoLoading) { return state.geoLoading; }
    var headers = state.geoEtag ? { "If-None-Match": state.geoEtag } : {};
    state.geoLoading = fetch(GEO_URL, { credentials: "same-origin", cache: "no-store", headers: headers })
      .then(function (res) {
        if (res.status === 304 && state.geo) { return state.geo; }
        if (!res.ok || !res.headers.get("ETag")) { throw new Error("geojson " + res.status); }
        var etag = res.headers.get("ETag");
        return res.json().then(function (geo) {
          state.geo = geo;
          state.geoEtag = etag;
          drawMapSoon();
          return geo;
        });
      })
      .catch(function () { return state.geo; })
      .then(function (geo) { state.geoLoading = null; return geo; });
    return state.geoLoading;
  }

  function pointFromRow(row) {
    return { id: row[0], lat: row[1], lon: row[2], kind: row[3], flag: row[4], number: row[5], category: row[6], grid: row[7], hl: 0, pushedAt: 0 };
  }

  function capPoints() {
    if (state.points.size <= MAX_POINTS) { return; }
    var extra = state.points.size - MAX_POINTS;
    var it = state.points.keys();
    while (extra-- > 0) { state.points.delete(it.next().value); } // the oldest first (insertion order)
  }

  /* The server's snapshot replaces what we hold; points pushed in the last seconds (maybe later than the
     snapshot) and running highlights are kept. */
  function setMapData(d) {
    var now = Date.now();
    var old = state.points;
    var points = new Map();
    for (var i = 0; i < d.points.length; i++) {
      var p = pointFromRow(d.points[i]);
      var before = old.get(p.id);
      if (before && before.hl > now) { p.hl = before.hl; }
      points.set(p.id, p);
    }
    old.forEach(function (p) {
      if (!points.has(p.id) && p.pushedAt && now - p.pushedAt < 15000) { points.set(p.id, p); }
    });
    state.points = points;
    capPoints();
    state.map = d;
    state.gridIndex = new Map();
    for (var j = 0; j < d.grids.length; j++) { state.gridIndex.set(d.grids[j], j); }
    state.alertGrids = new Set(d.alert_grids);
  }

  function fitView(el) {
    var bbox = state.geo && state.geo.bbox;
    if (!bbox) { return { center: { lon: 120.6, lat: 31.3 }, zoom: 9 }; }
    var w = Math.max(100, el.clientWidth), h = Math.max(100, el.clientHeight);
    var merc = function (lat) { var s = Math.sin(lat * Math.PI / 180); return Math.log((1 + s) / (1 - s)) / 2; };
    var dx = Math.max(1e-9, (bbox[2] - bbox[0]) / 360);
    var dy = Math.max(1e-9, (merc(bbox[3]) - merc(bbox[1])) / (2 * Math.PI));
    var zoom = Math.min(Math.log2(w * 0.94 / 512 / dx), Math.log2(h * 0.94 / 512 / dy), 17);
    return { center: { lon: (bbox[0] + bbox[2]) / 2, lat: (bbox[1] + bbox[3]) / 2 }, zoom: zoom };
  }

  function basemapStyle(text) {
    var cfg = null;
    try { cfg = JSON.parse(text || "null"); } catch (e) { cfg = null; }
    if (cfg && cfg.mode === "style" && cfg.url) { return cfg.url; }
    if (!cfg || cfg.mode !== "file" || !cfg.tiles) { return BLANK_STYLE; }
    var source = { type: "raster", tiles: [location.origin + cfg.tiles], tileSize: cfg.tileSize || 256,
      minzoom: cfg.minzoom, maxzoom: cfg.maxzoom }; // MapLibre's workers need an absolute tile URL
    if (cfg.bounds) { source.bounds = cfg.bounds; }
    if (cfg.attribution) { source.attribution = cfg.attribution; }
    return {
      id: "basemap", version: 8, sources: { basemap: source },
      layers: [{ id: "bg", type: "background", paint: { "background-color": cfg.background || "#07121f" } },
        { id: "basemap", type: "raster", source: "basemap" }]
    };
  }

  function drawMapSoon() {
    if (state.drawTimer) { return; }
    state.drawTimer = setTimeout(function () { state.drawTimer = null; drawMap(); }, 150);
  }

  function drawMap() {
    var el = document.getElementById("plot-map");
    var d = state.map;
    if (!el || !d) { return; }
    if (!state.geo) { loadGeo(); return; } // drawn when the polygons arrive
    var now = Date.now(), s = scale(), nextExpiry = Infinity;
    var maxLoad = 4;
    for (var i = 0; i < d.load.length; i++) { if (d.load[i] > maxLoad) { maxLoad = d.load[i]; } }
    var byKind = {}, alerting = { lat: [], lon: [], customdata: [] }, hl = { lat: [], lon: [] };
    KINDS.forEach(function (k) { byKind[k] = { lat: [], lon: [], customdata: [] }; });
    state.points.forEach(function (p) {
      var target = p.flag > 0 ? alerting : (byKind[p.kind] || byKind.ordinary);
      target.lat.push(p.lat);
      target.lon.push(p.lon);
      target.customdata.push([p.id, p.number, p.category, KIND_LABEL[p.kind] || ""]);
      if (p.hl > now) {
        hl.lat.push(p.lat);
        hl.lon.push(p.lon);
        nextExpiry = Math.min(nextExpiry, p.hl);
      }
    });
    var alertGrids = Array.from(state.alertGrids);
    var caseHover = "%{customdata[1]}<br>%{customdata[3]} · %{customdata[2]}<extra></extra>";
    var traces = [
      { type: "choroplethmap", name: "网格", geojson: state.geo, featureidkey: "id", locations: d.grids, z: d.load,
        zmin: 0, zmax: maxLoad, colorscale: [[0, "#0f2a44"], [0.5, "#1f7fb0"], [1, "#f2d43d"]],
        marker: { opacity: 0.72, line: { color: "#2b5275", width: 0.6 } },
        colorbar: { thickness: px(10), len: 0.3, x: 0.995, xanchor: "right", y: 0.02, yanchor: "bottom", outlinewidth: 0,
          bgcolor: "rgba(5,13,24,0.6)", tickfont: { color: "#8aa4bf", size: px(11) },
          title: { text: "今日上报", font: { color: "#8aa4bf", size: px(11) } } },
        hovertemplate: "%{properties.name}<br>今日上报 %{z} 件<extra></extra>" },
      { type: "choroplethmap", name: "预警网格", geojson: state.geo, featureidkey: "id", locations: alertGrids,
        z: alertGrids.map(function () { return 1; }), zmin: 0, zmax: 1, showscale: false,
        colorscale: [[0, "#b4121f"], [1, "#b4121f"]], marker: { opacity: 0.62, line: { color: "#ff6b6b", width: 1.4 } },
        hovertemplate: "%{properties.name}<br>有未处理的预警<extra></extra>" },
      { type: "scattermap", mode: "markers", name: "新上报", meta: "highlight", lat: hl.lat, lon: hl.lon,
        marker: { size: 34 * s, color: "#fde047", opacity: 0.5 }, hoverinfo: "skip" }
    ];
    KINDS.forEach(function (k) {
      traces.push({ type: "scattermap", mode: "markers", name: KIND_LABEL[k], meta: "cases", lat: byKind[k].lat, lon: byKind[k].lon,
        customdata: byKind[k].customdata, marker: { size: 9 * s, color: KIND_COLOR[k], opacity: 0.95 }, hovertemplate: caseHover });
    });
    // a white ring under the red markers: they stay visible on a red (alerting) grid
    traces.push({ type: "scattermap", mode: "markers", name: "逾期 / 预警（底）", meta: "halo", lat: alerting.lat, lon: alerting.lon,
      marker: { size: 21 * s, color: "#ffffff", opacity: 0.95 }, hoverinfo: "skip" });
    traces.push({ type: "scattermap", mode: "markers", name: "逾期 / 预警", meta: "cases", lat: alerting.lat, lon: alerting.lon,
      customdata: alerting.customdata, marker: { size: 16 * s, color: "#ff3b3b", opacity: 0.95 }, hovertemplate: caseHover });
    PERSON_STATES.forEach(function (st) {
      var group = state.people.filter(function (p) { return p.state === st; });
      traces.push({ type: "scattermap", mode: "markers", name: "网格员 · " + PERSON_LABEL[st], meta: "people",
        lat: group.map(function (p) { return p.lat; }), lon: group.map(function (p) { return p.lon; }),
        customdata: group.map(function (p) { return [p.name, p.grid || "", p.state_label, p.seen]; }),
        marker: { size: 12 * s, color: PERSON_COLOR[st], opacity: st === "offline" ? 0.7 : 1 },
        hovertemplate: "%{customdata[0]}（%{customdata[2]}）<br>%{customdata[1]}<br>最后上报 %{customdata[3]}<extra></extra>" });
    });
    var layout = baseLayout();
    layout.margin = { l: 0, r: 0, t: 0, b: 0 };
    layout.showlegend = false;
    layout.uirevision = "wall-map";
    var view = fitView(el);
    layout.map = { style: MAP_STYLE, center: view.center, zoom: view.zoom, uirevision: "wall-map" };
    Plotly.react(el, traces, layout, CONFIG);
    if (state.hlTimer) { clearTimeout(state.hlTimer); state.hlTimer = null; }
    if (nextExpiry < Infinity) {
      state.hlTimer = setTimeout(function () { state.hlTimer = null; drawMapSoon(); }, Math.max(200, nextExpiry - now + 50));
    }
  }

  function loadPositions() {
    if (!POS_URL || state.positionsOff || state.sessionLost) { return; }
    fetch(POS_URL, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) {
        if (res.status === 403) { state.positionsOff = true; return null; } // this role sees no positions
        return res.ok ? res.json() : null;
      })
      .then(function (body) {
        if (!body || !Array.isArray(body.items)) { return; }
        state.people = body.items;
        var count = document.getElementById("wall-people");
        if (count) { count.textContent = String(body.items.filter(function (p) { return p.state !== "offline"; }).length); }
        drawMapSoon();
      })
      .catch(function () { /* the next poll tries again */ });
  }

  function bumpLoad(gridId) {
    if (!state.map || gridId === null || gridId === undefined) { return; }
    var idx = state.gridIndex.get(String(gridId));
    if (idx !== undefined) { state.map.load[idx] += 1; }
  }

  // --- the ticker ------------------------------------------------------------------------------------------

  function onTicker(section) {
    var list = section.querySelector(".ticker");
    if (list && list.dataset.now) { state.clockOffset = parseInt(list.dataset.now, 10) - Date.now(); }
    var now = Date.now();
    state.freshAlerts.forEach(function (at, id) {
      if (now - at > FRESH_ALERT_MS) { state.freshAlerts.delete(id); return; }
      var li = section.querySelector('li[data-alert="' + id + '"]');
      if (li) { li.classList.add("fresh"); }
    });
    tickCountdown();
  }

  function tickCountdown() {
    var times = document.querySelectorAll("#panel-alerts time[data-due]");
    var now = Date.now() + state.clockOffset;
    for (var i = 0; i < times.length; i++) {
      var left = (Date.parse(times[i].dataset.due) - now) / 1000;
      times[i].textContent = fmtLeft(left);
      if (left < 0) { times[i].classList.add("past"); }
    }
  }

  // --- pushes ----------------------------------------------------------------------------------------------

  /* A case item: the map's point at once; `want` collects the panels it concerns. */
  function applyCase(d, want) {
    if (d.lat !== null && d.lat !== undefined && d.lon !== null && d.lon !== undefined) {
      var p = state.points.get(d.id);
      if (FINAL_STATES[d.state]) {
        if (p) { state.points.delete(d.id); }
      } else if (d.action === "report" || p) {
        if (!p) {
          p = { id: d.id, flag: 0, hl: 0 };
          state.points.set(d.id, p);
        }
        p.lat = d.lat; p.lon = d.lon; p.kind = d.kind; p.number = d.number; p.category = d.category; p.grid = d.grid_id;
        if (d.overdue && p.flag < 1) { p.flag = 1; }
        p.pushedAt = Date.now();
        if (d.action === "report") { p.hl = Date.now() + HIGHLIGHT_MS; }
      }
      want.draw = true;
    }
    if (d.action === "report") { bumpLoad(d.grid_id); }
    if (d.at_ms) { want.atMs = Math.max(want.atMs || 0, d.at_ms); }
    want.counts = want.map = want.rankings = true;
    if (d.action !== "report") { want.alerts = true; } // a step may clear an alert
  }

  function applyAlert(d, want) {
    state.freshAlerts.set(String(d.id), Date.now());
    if (state.freshAlerts.size > 200) { state.freshAlerts.delete(state.freshAlerts.keys().next().value); }
    var p = state.points.get(d.case_id);
    if (p) {
      p.flag = 2;
      if (p.grid !== null && p.grid !== undefined) { state.alertGrids.add(String(p.grid)); }
      want.draw = true;
    }
    want.alerts = want.map = true;
  }

  /* One push per tick: the sequence is checked once, every item applied, each panel concerned asked for once. */
  function onBatch(b) {
    if (!b || !Array.isArray(b.items)) { return; }
    noteSeq(b.seq);
    markUpdated();
    state.batches += 1;
    var want = {};
    for (var i = 0; i < b.items.length; i++) {
      var item = b.items[i];
      if (!item || !item.data) { continue; }
      if (item.event === "case") { applyCase(item.data, want); }
      else if (item.event === "alert") { applyAlert(item.data, want); }
    }
    if (want.atMs) { // commit → here by this PC's clock (right when it keeps time); commit → flush by the server's
      state.lagMs = Date.now() - want.atMs;
      if (b.tick_at) { state.flushLagMs = Math.round(b.tick_at * 1000 - want.atMs); }
    }
    if (b.deltas && Object.keys(b.deltas).length) { want.counts = true; } // its place's counters moved this tick
    if (want.draw) { capPoints(); drawMapSoon(); }
    ["counts", "map", "rankings", "alerts"].forEach(function (name) { if (want[name]) { refresh(name); } });
  }

  // --- connection state: the socket and /healthz --------------------------------------------------------

  function isDown() { return !state.socketUp || !state.healthUp; }

  function updateBanner() {
    if (isDown()) {
      if (banner.hidden && !state.bannerTimer) {
        state.bannerTimer = setTimeout(function () {
          state.bannerTimer = null;
          if (isDown()) { banner.hidden = false; linkState.classList.add("down"); linkState.textContent = "中断"; }
        }, BANNER_GRACE_MS);
      }
      return;
    }
    if (state.bannerTimer) { clearTimeout(state.bannerTimer); state.bannerTimer = null; }
    linkState.classList.remove("down");
    linkState.textContent = "实时";
    if (!banner.hidden) {
      banner.hidden = true;
      refreshAll(); // back after an outage: what we show may be old
    }
  }

  function checkHealth() {
    var ctrl = new AbortController();
    var timer = setTimeout(function () { ctrl.abort(); }, HEALTH_TIMEOUT_MS);
    return fetch(HEALTH_URL, { cache: "no-store", credentials: "same-origin", signal: ctrl.signal })
      .then(function (res) { return res.ok; }, function () { return false; })
      .then(function (ok) {
        clearTimeout(timer);
        state.healthUp = ok;
        updateBanner();
      });
  }

  var socket = io("/live", {
    transports: ["websocket", "polling"], tryAllTransports: true,
    reconnection: true, reconnectionDelay: 1000, reconnectionDelayMax: 5000
  });
  var renderedAt = Date.now();
  socket.on("connect", function () {
    state.socketUp = true;
    // a reconnect, or a first connection that came late: pushes may have been missed, re-read the snapshot;
    // the numbering starts afresh (the server may have restarted with new counters)
    if (state.everConnected || Date.now() - renderedAt > 3000) { state.lastSeq = null; refreshAll(); }
    state.everConnected = true;
    checkHealth();
    updateBanner();
  });
  socket.on("disconnect", function (reason) {
    state.socketUp = false;
    updateBanner();
    if (reason === "io server disconnect") {
      // the server ends a socket when its session ends (logout, idle, password change, deactivation): re-read
      // a panel, which turns into the login page if so (see htmx:beforeSwap); else the socket comes back
      setTimeout(function () { refresh("logins"); socket.connect(); }, 3000);
    }
  });
  socket.on("connect_error", function () {
    state.socketUp = false;
    updateBanner();
    if (!socket.active) { setTimeout(function () { socket.connect(); }, 5000); } // refused: try again later
  });
  socket.on("batch", onBatch);

  // --- start -----------------------------------------------------------------------------------------------

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    if (resizeTimer) { clearTimeout(resizeTimer); }
    resizeTimer = setTimeout(function () { resizeTimer = null; drawHourly(); drawAttendance(); drawMap(); }, 250);
  });
  setInterval(function () {
    if (clock) { clock.textContent = fmtDateTime(serverNow()); }
    tickCountdown();
  }, 1000);
  setInterval(checkHealth, HEALTH_MS);
  setInterval(loadPositions, POSITIONS_MS);
  loadPositions();
  setInterval(refreshAll, FULL_REFRESH_MS);
  setInterval(function () { refresh("attendance"); refresh("logins"); }, PRESENCE_REFRESH_MS);

  var sections = document.querySelectorAll("section.panel[data-panel]");
  for (var i = 0; i < sections.length; i++) { drawPanel(sections[i]); }
  loadGeo();
  updateBanner();

  // for tests and operators: how much the page holds (it must not grow)
  window.wallState = function () {
    return { points: state.points.size, lastSeq: state.lastSeq, socketUp: state.socketUp, healthUp: state.healthUp,
      freshAlerts: state.freshAlerts.size, banner: !banner.hidden, people: state.people.length,
      batches: state.batches, lagMs: state.lagMs, flushLagMs: state.flushLagMs };
  };
})();
