/* 巡查轨迹回放 (issue 14 §3): the drill-down gridworker page draws a day's patrol tracks over his grid
 * (an SVG drawing, no tiles: the server projects the points, commandcenter/positions.replay_figure) and a
 * play button moves a marker along them, one real hour of patrol in about ten seconds. */
(function () {
  "use strict";

  var root = document.getElementById("patrol-replay");
  if (!root) { return; }
  var SVG_NS = "http://www.w3.org/2000/svg";
  var URL_BASE = root.dataset.url;
  var dayInput = root.querySelector("#replay-day");
  var loadButton = root.querySelector(".replay-load");
  var playButton = root.querySelector(".replay-play");
  var status = root.querySelector(".replay-status");
  var clock = root.querySelector(".replay-clock");
  var gridPath = root.querySelector(".replay-grid");
  var tracks = root.querySelector(".replay-tracks");
  var marker = root.querySelector(".replay-marker");
  var SPEED = 360; // patrol seconds per real second
  var COLORS = ["#16a34a", "#0b5cad", "#c2410c", "#7c3aed"];
  var points = []; // every [x, y, unix] of the day, in time order
  var anim = null;

  var timeFormat = new Intl.DateTimeFormat("zh-CN", { timeZone: root.dataset.tz || "Asia/Shanghai", hour: "2-digit",
    minute: "2-digit", second: "2-digit", hourCycle: "h23" }); // the city's clock, not this PC's
  function hhmm(unix) { return timeFormat.format(new Date(unix * 1000)); }

  function stop() {
    if (anim) { cancelAnimationFrame(anim); anim = null; }
    playButton.textContent = "▶ 回放";
  }

  function place(i, frac) {
    var a = points[i], b = points[Math.min(i + 1, points.length - 1)];
    var x = a[0] + (b[0] - a[0]) * frac, y = a[1] + (b[1] - a[1]) * frac;
    marker.setAttribute("cx", x);
    marker.setAttribute("cy", y);
    clock.textContent = "回放时刻 " + hhmm(a[2] + (b[2] - a[2]) * frac);
  }

  function play() {
    if (anim) { stop(); return; }
    if (points.length < 2) { return; }
    var t0 = points[0][2], tEnd = points[points.length - 1][2], started = performance.now(), i = 0;
    playButton.textContent = "■ 停止";
    root.dataset.playing = "1";
    function frame(now) {
      var t = t0 + (now - started) / 1000 * SPEED;
      while (i < points.length - 2 && points[i + 1][2] <= t) { i++; }
      if (t >= tEnd) {
        place(points.length - 1, 0);
        root.dataset.playing = "done";
        stop();
        return;
      }
      var a = points[i], b = points[i + 1];
      place(i, b[2] > a[2] ? Math.min(1, Math.max(0, (t - a[2]) / (b[2] - a[2]))) : 1);
      anim = requestAnimationFrame(frame);
    }
    anim = requestAnimationFrame(frame);
  }

  function draw(body) {
    stop();
    while (tracks.firstChild) { tracks.removeChild(tracks.firstChild); }
    gridPath.setAttribute("d", body.grid_path || "");
    points = [];
    var drawn = 0;
    (body.patrols || []).forEach(function (p, k) {
      if (!p.points || !p.points.length) { return; }
      var line = document.createElementNS(SVG_NS, "polyline");
      line.setAttribute("points", p.points.map(function (pt) { return pt[0] + "," + pt[1]; }).join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", COLORS[k % COLORS.length]);
      line.setAttribute("stroke-width", "3");
      line.setAttribute("stroke-linejoin", "round");
      line.setAttribute("class", "replay-track");
      tracks.appendChild(line);
      points = points.concat(p.points);
      drawn++;
    });
    points.sort(function (a, b) { return a[2] - b[2]; });
    var n = (body.patrols || []).length;
    if (!n) {
      status.textContent = body.day + " 没有巡查记录。";
    } else {
      status.textContent = body.day + " 共巡查 " + n + " 次：" + body.patrols.map(function (p) {
        return p.started + "–" + (p.ended || "进行中") + "（" + p.distance_m + " 米）";
      }).join("，");
    }
    playButton.disabled = points.length < 2;
    if (points.length) { place(0, 0); } else { marker.setAttribute("cx", -20); marker.setAttribute("cy", -20); clock.textContent = ""; }
    root.dataset.tracks = String(drawn);
    delete root.dataset.playing;
  }

  var asked = 0; // only the answer to the latest request is drawn

  function load() {
    var mine = ++asked;
    status.textContent = "正在读取…";
    delete root.dataset.tracks;
    fetch(URL_BASE + "?day=" + encodeURIComponent(dayInput.value || ""), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) {
        return res.json().then(function (body) { return { ok: res.ok, body: body }; });
      })
      .then(function (r) {
        if (mine !== asked) { return; }
        if (!r.ok) { status.textContent = (r.body.error && r.body.error.message) || "读取失败"; return; }
        draw(r.body);
      })
      .catch(function () { status.textContent = "读取失败，请稍后重试"; });
  }

  loadButton.addEventListener("click", load);
  dayInput.addEventListener("change", load);
  playButton.addEventListener("click", play);
  load();
})();
