// /g/: the gridworker's phone pages. Every write goes through one offline queue (IndexedDB) to the JSON API
// with the page's session and CSRF token, each item with its own idempotency key (client_key), removed only
// once the server confirmed it. A running patrol lives in localStorage and survives a reload.
(function () {
  "use strict";
  var body = document.body;
  var account = body.dataset.account;
  var gridCode = body.dataset.gridCode || null;
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content;
  var params = new URLSearchParams(location.search);
  // the throttle of track points and the length of a patrol chunk (shorter for tests: ?pointSeconds=1)
  var POINT_SECONDS = Number(params.get("pointSeconds") || localStorage.getItem("gw.pointSeconds") || 15);
  var SEGMENT_MINUTES = Number(params.get("segmentMinutes") || localStorage.getItem("gw.segmentMinutes") || 15);
  var FLUSH_EVERY_MS = 20000;

  function uuid() {
    if (window.crypto && crypto.randomUUID) { return crypto.randomUUID(); }
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64; b[8] = (b[8] & 63) | 128;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }
  function $(sel, root) { return (root || document).querySelector(sel); }
  function text(el, value) { if (el) { el.textContent = value; } }

  // --- toasts --------------------------------------------------------------------------------------------
  function toast(message, kind) {
    var box = $("#toasts");
    if (!box) { return; }
    var el = document.createElement("div");
    el.className = "toast " + (kind || "info");
    el.setAttribute("role", "status");
    el.textContent = message;
    box.appendChild(el);
    setTimeout(function () { el.remove(); }, 6000);
  }

  // --- the queue (IndexedDB: photos are Blobs) ---------------------------------------------------------------
  var dbPromise = new Promise(function (resolve, reject) {
    var req = indexedDB.open("gridworker-" + account, 1);
    req.onupgradeneeded = function () { req.result.createObjectStore("queue", { keyPath: "id", autoIncrement: true }); };
    req.onsuccess = function () { resolve(req.result); };
    req.onerror = function () { reject(req.error); };
  });
  function tx(mode, work) {
    return dbPromise.then(function (db) {
      return new Promise(function (resolve, reject) {
        var t = db.transaction("queue", mode);
        var result = work(t.objectStore("queue"));
        t.oncomplete = function () { resolve(result && "result" in result ? result.result : undefined); };
        t.onerror = function () { reject(t.error); };
        t.onabort = function () { reject(t.error); };
      });
    });
  }
  function qAll() { return tx("readonly", function (s) { return s.getAll(); }); }
  function qAdd(item) { item.createdAt = Date.now(); return tx("readwrite", function (s) { return s.add(item); }); }
  function qPut(item) { return tx("readwrite", function (s) { return s.put(item); }); }
  function qDel(id) { return tx("readwrite", function (s) { s.delete(id); }); }

  function updateBadge() {
    return qAll().then(function (items) {
      var badge = $("#queue-badge");
      badge.dataset.count = String(items.length);
      badge.textContent = "待发送 " + items.length;
      badge.classList.toggle("hidden", items.length === 0);
      badge.classList.toggle("failed", items.some(function (i) { return i.failed; }));
      var list = $("#queue-list");
      list.replaceChildren();
      items.forEach(function (item) {
        var li = document.createElement("li");
        li.textContent = item.label + (item.failed ? "（未成功：" + item.failed + "）" : "（等待发送）");
        if (item.failed) {
          var del = document.createElement("button");
          del.type = "button"; del.className = "btn small"; del.textContent = "删除";
          del.addEventListener("click", function () { qDel(item.id).then(updateBadge); });
          li.appendChild(del);
        }
        list.appendChild(li);
      });
      if (!items.length) { $("#queue-panel").classList.add("hidden"); }
      showPatrolProgress(items);
      return items;
    });
  }

  // --- the API ------------------------------------------------------------------------------------------
  function Retry(message) { this.message = message; }
  function api(method, url, data, form) {
    var headers = { "X-CSRFToken": csrf, Accept: "application/json" };
    var payload = form || null;
    if (data !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(data); }
    return fetch(url, { method: method, headers: headers, body: payload, credentials: "same-origin" }).then(
      function (response) {
        return response.json().catch(function () { return {}; }).then(function (json) {
          return { status: response.status, data: json };
        });
      },
      function () { throw new Retry("网络不可用"); }
    );
  }
  function errorOf(res) {
    var err = (res.data && res.data.error) || {};
    return { message: err.message || "请求失败（" + res.status + "）", field: err.field || null };
  }
  // 2xx: done; 401, 429 and 5xx: keep the item and try later; any other refusal is final for this item
  function check(res) {
    if (res.status >= 200 && res.status < 300) { return res.data; }
    if (res.status === 401) { throw new Retry("登录已失效，请重新登录后自动发送"); }
    if (res.status === 403 && errorOf(res).field === "X-CSRFToken") { throw new Retry("页面已过期，请刷新页面"); }
    if (res.status === 429 || res.status >= 500) { throw new Retry("服务器繁忙，稍后自动重试"); }
    var e = errorOf(res);
    e.status = res.status;
    throw e;
  }
  function uploadPhoto(caseId, blob) {
    var form = new FormData();
    form.append("file", blob, blob.name || "photo.jpg");
    return api("POST", "/api/v1/cases/" + caseId + "/photos", undefined, form).then(check);
  }

  function sendReport(item) {
    var step = Promise.resolve();
    if (!item.caseId) {
      step = api("POST", "/api/v1/cases", item.body).then(check).then(function (data) {
        item.caseId = data.id; item.caseNumber = data.number;
        return qPut(item);
      });
    }
    return step.then(function () {
      if (item.photo && !item.photoDone) {
        return uploadPhoto(item.caseId, item.photo).then(function () { item.photoDone = true; return qPut(item); });
      }
    }).then(function () {
      if (item.selfHandled && item.closePhoto && !item.closePhotoDone) {
        return uploadPhoto(item.caseId, item.closePhoto).then(function () { item.closePhotoDone = true; return qPut(item); });
      }
    }).then(function () {
      if (!item.selfHandled || item.closed) { return; }
      return api("POST", "/api/v1/cases/" + item.caseId + "/actions/self_close", { note: item.closeNote }).then(function (res) {
        if (res.status === 409) { // a retry after a lost answer: closed already?
          return api("GET", "/api/v1/cases/" + item.caseId).then(check).then(function (c) {
            if (c.state !== "closed") { check(res); }
          });
        }
        check(res);
      });
    });
  }

  // 接收 / 反馈 of a case dispatched to me: the step with its own key (a resend answers the step already taken),
  // then the photo of the work done, if any (deduplicated by content on the server)
  function sendStep(item) {
    var step = Promise.resolve();
    if (!item.stepDone) {
      step = api("POST", "/api/v1/cases/" + item.caseId + "/actions/" + item.action, item.body).then(check)
        .then(function () { item.stepDone = true; return qPut(item); });
    }
    return step.then(function () {
      if (item.photo && !item.photoDone) {
        return uploadPhoto(item.caseId, item.photo).then(function () { item.photoDone = true; return qPut(item); });
      }
    });
  }

  // a sign-in carries the time it was taken on the phone once it waited in the queue (the first try, at the
  // tap, is stamped by the server's clock: a phone clock running ahead cannot get it refused)
  function sendSignIn(item) {
    var data = Object.assign({}, item.body);
    if (!item.tried) { delete data.at; }
    item.tried = true;
    return qPut(item).then(function () { return api("POST", "/api/v1/sign-ins", data); }).then(check);
  }

  var SENDERS = {
    signin: sendSignIn,
    patrol: function (item) { return api("POST", "/api/v1/patrols", item.body).then(check); },
    visit: function (item) { return api("POST", "/api/v1/visits", item.body).then(check); },
    report: sendReport,
    step: sendStep,
  };

  var flushing = null;
  function flush() {
    if (flushing) { return flushing; }
    var reached = false; // the server answered: only then is the phone known to be online
    flushing = qAll().then(function (items) {
      var chain = Promise.resolve(false);
      items.forEach(function (item) {
        chain = chain.then(function (stop) {
          if (stop || item.failed) { return stop; }
          return SENDERS[item.kind](item).then(
            function () {
              reached = true;
              return qDel(item.id).then(function () { sent(item, null); return false; });
            },
            function (err) {
              if (err instanceof Retry) { setNet(false, err.message); return true; }
              reached = true;
              item.failed = err.message || String(err);
              return qPut(item).then(function () { sent(item, err); return false; });
            }
          );
        });
      });
      return chain;
    }).then(function (stopped) {
      if (!stopped && reached) { setNet(true); }
    }).catch(function (err) { toast("发送出错：" + err, "error"); })
      .then(function () { flushing = null; return updateBadge(); });
    return flushing;
  }

  var sentNumbers = {}; // client_key → case number, for the form that is waiting for its own report
  var LABELS = { signin: "签到", patrol: "巡查轨迹", visit: "走访记录", report: "事件上报", step: "案件办理" };
  function sent(item, err) {
    document.dispatchEvent(new CustomEvent("gw:sent", { detail: { item: item, error: err } }));
    if (err) { toast(item.label + " 未成功：" + err.message, "error"); return; }
    if (item.kind === "report") { sentNumbers[item.key] = item.caseNumber; toast("已上报，案卷号 " + item.caseNumber, "ok"); }
    else if (item.fromQueue) { toast(LABELS[item.kind] + "已发送", "ok"); }
    refresh();
  }

  function enqueue(item) {
    // after a send already under way (it read the queue before this item), one more pass takes this item
    return qAdd(item).then(function (id) { item.id = id; return updateBadge(); })
      .then(function () { return flushing; }).then(flush).then(function () {
      return qAll().then(function (items) {
        var still = items.filter(function (i) { return i.id === item.id; })[0];
        if (!still) { return { done: true, number: item.caseNumber || (sentNumbers[item.key] || null) }; }
        if (still.failed) { return { error: still }; }
        still.fromQueue = true;
        return qPut(still).then(function () { return { queued: true }; });
      });
    });
  }

  function setNet(online, why) {
    var net = $("#net");
    net.dataset.online = online ? "1" : "0";
    net.textContent = online ? "在线" : (why || "离线");
  }

  // --- refresh what the server shows ------------------------------------------------------------------------
  function refresh() {
    if ($("#today")) { htmx.ajax("GET", body.dataset.scope, { target: "#today", swap: "outerHTML" }); }
    if ($("#work")) { htmx.ajax("GET", body.dataset.scope + "?part=work", { target: "#work", swap: "outerHTML" }); }
    htmx.trigger(document.body, "gw:refresh");
  }
  document.body.addEventListener("htmx:afterSwap", function () { updateBadge(); });

  // --- location ---------------------------------------------------------------------------------------------
  var lastFix = null;
  function locate(timeout) {
    return new Promise(function (resolve) {
      if (!navigator.geolocation) { resolve(null); return; }
      navigator.geolocation.getCurrentPosition(
        function (p) { lastFix = { lat: p.coords.latitude, lon: p.coords.longitude }; resolve(lastFix); },
        function () { resolve(null); },
        { enableHighAccuracy: true, timeout: timeout || 10000, maximumAge: 30000 }
      );
    });
  }

  // --- sign-in ------------------------------------------------------------------------------------------------
  document.addEventListener("click", function (event) {
    var btn = event.target.closest("#signin-btn");
    if (!btn) { return; }
    btn.disabled = true;
    var takenAt = new Date().toISOString(); // the time of the tap, sent if the sign-in has to wait in the queue
    text($("#signin-state"), "正在定位…");
    locate().then(function (where) {
      var data = Object.assign({ at: takenAt }, where || {});
      return enqueue({ kind: "signin", label: "签到", key: uuid(), body: data }).then(function (r) {
        if (r.queued) { text($("#signin-state"), "已保存签到，联网后自动发送"); }
        if (r.error) { text($("#signin-state"), r.error.failed); btn.disabled = false; }
        if (!where) { toast("未能取得位置，已签到但未附位置", "info"); }
      });
    });
  });

  // --- patrol -------------------------------------------------------------------------------------------------
  var PATROL_KEY = "gw.patrol." + account;
  var patrol = JSON.parse(localStorage.getItem(PATROL_KEY) || "null");
  var watchId = null, ticker = null;
  function savePatrol() {
    if (patrol) { localStorage.setItem(PATROL_KEY, JSON.stringify(patrol)); } else { localStorage.removeItem(PATROL_KEY); }
  }
  function nowSec() { return Math.floor(Date.now() / 1000); }
  function addPoint(lonlat) {
    patrol.points.push([lonlat[0], lonlat[1], nowSec()]);
    patrol.lastPointAt = Date.now();
    savePatrol();
  }
  function onPosition(p) {
    if (!patrol) { return; }
    patrol.last = [p.coords.longitude, p.coords.latitude];
    text($("#patrol-error"), "");
    if (!patrol.lastPointAt || Date.now() - patrol.lastPointAt >= POINT_SECONDS * 1000) { addPoint(patrol.last); }
    else { savePatrol(); }
    renderPatrol();
  }
  // a chunk of the patrol: recorded as a patrol of its own (same rules as the app's), queued like any write
  function closeSegment(final) {
    var end = Date.now();
    if (patrol.last && (!patrol.points.length || final)) { addPoint(patrol.last); }
    if (!patrol.points.length) { return false; }
    var seg = {
      kind: "patrol",
      label: "巡查轨迹 " + new Date(patrol.segStart).toTimeString().slice(0, 5) + "–" + new Date(end).toTimeString().slice(0, 5),
      key: patrol.id + "." + patrol.seg,
      minutes: (end - patrol.segStart) / 60000,
      body: {
        client_key: patrol.id + "." + patrol.seg,
        started_at: new Date(patrol.segStart).toISOString(),
        ended_at: new Date(end).toISOString(),
        track: patrol.points,
      },
    };
    patrol.seg += 1;
    patrol.segStart = end;
    patrol.points = patrol.last ? [[patrol.last[0], patrol.last[1], Math.ceil(end / 1000)]] : [];
    savePatrol();
    enqueue(seg).then(function (r) { if (r.error) { text($("#patrol-error"), r.error.failed); } });
    return true;
  }
  function tick() {
    if (!patrol) { return; }
    if (patrol.last && Date.now() - (patrol.lastPointAt || 0) >= POINT_SECONDS * 1000) { addPoint(patrol.last); }
    if (Date.now() - patrol.segStart >= SEGMENT_MINUTES * 60000) { closeSegment(false); }
    renderPatrol();
  }
  function watch() {
    if (navigator.geolocation) {
      watchId = navigator.geolocation.watchPosition(onPosition, function (e) {
        if (e.code === 1 || !patrol || !patrol.last) {
          text($("#patrol-error"), "定位失败：" + (e.code === 1 ? "请允许本页面使用位置信息" : "暂时无法定位"));
        }
      }, { enableHighAccuracy: true, maximumAge: 0 });
    }
    ticker = setInterval(tick, 1000);
  }
  var pendingPatrolMinutes = 0;
  function showPatrolProgress(items) {
    pendingPatrolMinutes = items.filter(function (i) { return i.kind === "patrol" && !i.failed; })
      .reduce(function (sum, i) { return sum + (i.minutes || 0); }, 0);
    renderPatrol();
  }
  function renderPatrol() {
    var start = $("#patrol-start");
    if (!start) { return; }
    var running = !!patrol;
    start.classList.toggle("hidden", running);
    $("#patrol-stop").classList.toggle("hidden", !running);
    var segMinutes = running ? (Date.now() - patrol.segStart) / 60000 : 0;
    text($("#patrol-state"), running ? "巡查中，开始于 " + new Date(patrol.startedAt).toTimeString().slice(0, 5) : "未在巡查");
    text($("#patrol-elapsed"), running ? Math.floor((Date.now() - patrol.startedAt) / 60000) + " 分钟" : "0 分钟");
    text($("#patrol-points"), running ? String(patrol.points.length + patrol.seg) : "0");
    var today = $("#today");
    if (today) {
      var goal = Number(today.dataset.goal);
      var total = Number(today.dataset.patrolMinutes) + pendingPatrolMinutes + segMinutes;
      text($("#patrol-total"), String(Math.floor(total)));
      $("#patrol-bar").style.width = Math.min(100, (100 * total) / goal) + "%";
      $(".progress", today).setAttribute("aria-valuenow", String(Math.floor(total)));
    }
  }
  document.addEventListener("click", function (event) {
    if (event.target.closest("#patrol-start")) {
      text($("#patrol-error"), "");
      var t = Date.now();
      patrol = { id: uuid(), startedAt: t, segStart: t, seg: 0, points: [], last: null, lastPointAt: 0 };
      savePatrol();
      watch();
      renderPatrol();
    } else if (event.target.closest("#patrol-stop")) {
      if (!patrol.last) { text($("#patrol-error"), "尚未取得位置，无法结束：请稍候或检查定位权限"); return; }
      closeSegment(true);
      if (watchId !== null) { navigator.geolocation.clearWatch(watchId); }
      clearInterval(ticker);
      patrol = null;
      savePatrol();
      renderPatrol();
      toast("巡查已结束", "ok");
    }
  });
  if (patrol && $("#patrol-start")) { watch(); }

  // --- report -------------------------------------------------------------------------------------------------
  var reportForm = $("#report-form");
  function fieldError(form, field, message) {
    var el = $('.error[data-field="' + field + '"]', form) || $('.error[data-field="form"]', form);
    el.textContent = message;
  }
  function clearErrors(form) { form.querySelectorAll(".error").forEach(function (e) { e.textContent = ""; }); }
  // a phone photo can be several MB: send at most 1600 px, JPEG
  function shrink(file) {
    if (!file || file.size <= 1500000 || !window.createImageBitmap) { return Promise.resolve(file); }
    return createImageBitmap(file).then(function (img) {
      var k = Math.min(1, 1600 / Math.max(img.width, img.height));
      var canvas = document.createElement("canvas");
      canvas.width = Math.round(img.width * k); canvas.height = Math.round(img.height * k);
      canvas.getContext("2d").drawImage(img, 0, 0, canvas.width, canvas.height);
      return new Promise(function (resolve) {
        canvas.toBlob(function (blob) { resolve(blob || file); }, "image/jpeg", 0.85);
      });
    }).catch(function () { return file; });
  }
  function setLocation(lat, lon, how) {
    $("#lat").value = lat; $("#lon").value = lon;
    text($("#location-text"), how + "：" + lat.toFixed(5) + ", " + lon.toFixed(5));
    var map = $("#grid-map");
    if (map) {
      var kx = Number(map.dataset.kx);
      var marker = $("#map-marker");
      var vb = map.viewBox.baseVal;
      marker.setAttribute("cx", lon * kx); marker.setAttribute("cy", -lat);
      marker.setAttribute("r", Math.max(vb.width, vb.height) / 40);
      marker.classList.remove("hidden");
    }
  }
  if (reportForm) {
    var search = $("#category-search");
    var items = Array.prototype.slice.call(document.querySelectorAll("#category-list li"));
    search.addEventListener("input", function () {
      var words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
      items.forEach(function (li) {
        var hay = li.dataset.search.toLowerCase();
        li.classList.toggle("hidden", !words.every(function (w) { return hay.indexOf(w) >= 0; }));
      });
    });
    function pick(li) {
      items.forEach(function (x) { x.classList.toggle("picked", x === li); x.setAttribute("aria-selected", x === li); });
      $("#category_code").value = li.dataset.code;
      text($("#category-picked"), "已选：" + li.dataset.search);
      $("#category-picked").dataset.name = li.dataset.search.replace(/^\S+\s/, "");
      // a category that must go up cannot be self-handled (the domain refuses it too: field self_handled)
      var must = li.dataset.mustEscalate === "1", box = $("#self_handled");
      box.disabled = must;
      if (must && box.checked) { box.checked = false; $("#self-part").classList.add("hidden"); }
      text($('.error[data-field="self_handled"]', reportForm), must ? "该类别事件须流转上级处置，不能自办自结" : "");
    }
    $("#category-list").addEventListener("click", function (e) { var li = e.target.closest("li"); if (li) { pick(li); } });
    $("#category-list").addEventListener("keydown", function (e) {
      if (e.key === "Enter" && e.target.closest("li")) { e.preventDefault(); pick(e.target.closest("li")); }
    });
    $("#photo").addEventListener("change", function () {
      var f = this.files[0], img = $("#photo-preview");
      if (img.dataset.url) { URL.revokeObjectURL(img.dataset.url); }
      if (f) { img.dataset.url = URL.createObjectURL(f); img.src = img.dataset.url; img.classList.remove("hidden"); }
      else { img.classList.add("hidden"); }
    });
    $("#self_handled").addEventListener("change", function () { $("#self-part").classList.toggle("hidden", !this.checked); });
    $("#locate-btn").addEventListener("click", function () {
      text($("#location-text"), "正在定位…");
      locate().then(function (w) {
        if (w) { setLocation(w.lat, w.lon, "手机定位"); } else { text($("#location-text"), "定位失败，请在网格图上点选"); }
      });
    });
    var map = $("#grid-map");
    if (map) {
      map.addEventListener("click", function (e) {
        var pt = map.createSVGPoint();
        pt.x = e.clientX; pt.y = e.clientY;
        var p = pt.matrixTransform(map.getScreenCTM().inverse());
        setLocation(-p.y, p.x / Number(map.dataset.kx), "网格图点选");
      });
    }
    locate(8000).then(function (w) { if (w && !$("#lat").value) { setLocation(w.lat, w.lon, "手机定位"); } });

    reportForm.addEventListener("submit", function (event) {
      event.preventDefault();
      clearErrors(reportForm);
      var f = reportForm.elements;
      var selfHandled = f.self_handled.checked;
      var ok = true;
      if (!f.category_code.value) { fieldError(reportForm, "category_code", "请选择事件类别"); ok = false; }
      if (!f.description.value.trim()) { fieldError(reportForm, "description", "请填写事件描述"); ok = false; }
      if (!f.lat.value && !gridCode) { fieldError(reportForm, "lat", "请使用手机定位或在网格图上点选位置"); ok = false; }
      if (selfHandled && !f.close_note.value.trim()) { fieldError(reportForm, "note", "自办自结须填写处置情况"); ok = false; }
      if (!ok) { return; }
      var key = uuid();
      var payload = {
        client_key: key,
        category_code: f.category_code.value,
        description: f.description.value.trim(),
        self_handled: selfHandled,
        discovered_at: new Date().toISOString(),
      };
      if (f.lat.value) { payload.lat = Number(f.lat.value); payload.lon = Number(f.lon.value); }
      else { payload.grid_code = gridCode; }
      if (f.address.value.trim()) { payload.address = f.address.value.trim(); }
      var submit = $("#report-submit");
      submit.disabled = true;
      text($("#report-done"), "正在提交…");
      Promise.all([shrink(f.photo.files[0]), shrink(selfHandled ? f.close_photo.files[0] : null)]).then(function (photos) {
        return enqueue({
          kind: "report", key: key, label: "上报：" + ($("#category-picked").dataset.name || payload.category_code),
          body: payload, photo: photos[0] || null, closePhoto: photos[1] || null,
          selfHandled: selfHandled, closeNote: selfHandled ? f.close_note.value.trim() : null,
        });
      }).then(function (r) {
        submit.disabled = false;
        if (r.error && !r.error.caseId) {
          // refused before any case existed: the form is kept as it is, the item leaves the queue
          qDel(r.error.id).then(updateBadge);
          text($("#report-done"), "");
          var msg = r.error.failed, field = null;
          var m = /^([a-z_]+): /.exec(msg);
          if (m) { field = m[1]; msg = msg.slice(m[0].length); }
          fieldError(reportForm, field === "lon" ? "lat" : field || "form", msg);
          return;
        }
        reportForm.reset();
        $("#category_code").value = ""; $("#lat").value = ""; $("#lon").value = "";
        text($("#category-picked"), "未选择");
        items.forEach(function (x) { x.classList.remove("picked", "hidden"); });
        $("#photo-preview").classList.add("hidden");
        $("#self-part").classList.add("hidden");
        text($("#report-done"), r.queued ? "网络不可用：已保存在手机上，联网后自动发送" : r.error ? "案件已上报，但：" + r.error.failed : "已上报，案卷号 " + r.number);
      });
    });
  }

  // --- visits -------------------------------------------------------------------------------------------------
  document.addEventListener("submit", function (event) {
    var form = event.target.closest("form.gw-visit");
    if (!form) { return; }
    event.preventDefault();
    clearErrors(form);
    var note = form.elements.note.value.trim();
    if (!note) { fieldError(form, "note", "请填写走访情况"); return; }
    var key = uuid();
    var name = form.closest("li").querySelector("b").textContent;
    var at = new Date().toISOString();
    locate(5000).then(function (where) {
      var payload = { client_key: key, at: at, note: note };
      // a person (重点人员) or a site (重点场所, 群租房, 出租屋): the same visit, the same domain function
      if (form.dataset.site) { payload.site_id = Number(form.dataset.site); } else { payload.person_id = Number(form.dataset.person); }
      if (where) { payload.lat = where.lat; payload.lon = where.lon; }
      return enqueue({ kind: "visit", key: key, label: "走访：" + name, body: payload });
    }).then(function (r) {
      if (r.error) { fieldError(form, "note", r.error.failed); return; }
      form.reset();
      toast(r.queued ? "走访已保存在手机上，联网后自动发送" : "走访已记录", "ok");
    });
  });

  // --- case steps: 接收 and 反馈 go through the queue too, each with its own key (client_key) -----------------------
  function stepQueued(card, action) {
    var state = $(".state", card);
    if (action === "accept") {
      // offline, the page cannot be read again: the feedback form is shown at once, sent after the 接收
      var accept = $('button[data-action="accept"]', card);
      if (accept) { accept.remove(); }
      var fb = $(".feedback-part", card);
      if (fb) { fb.classList.remove("hidden"); }
      text(state, "已接收（待发送）");
    } else {
      card.querySelectorAll(".feedback-part textarea, .feedback-part input, .feedback-part button").forEach(function (el) { el.disabled = true; });
      text(state, "已反馈（待发送）");
    }
    card.classList.add("queued");
  }
  document.addEventListener("click", function (event) {
    var btn = event.target.closest("button[data-action]");
    if (!btn) { return; }
    var card = btn.closest(".case");
    var box = $(".error", card);
    var action = btn.dataset.action;
    var key = uuid();
    var data = { client_key: key };
    var file = null;
    if (action === "feedback") {
      data.note = $("textarea", card).value.trim();
      if (!data.note) { box.textContent = "请填写处置反馈"; return; }
      var input = $('input[type="file"]', card);
      file = input && input.files[0];
    }
    box.textContent = "";
    btn.disabled = true;
    var label = (action === "accept" ? "接收：" : "反馈：") + $(".case-head b", card).textContent;
    shrink(file).then(function (photo) {
      return enqueue({ kind: "step", key: key, label: label, caseId: Number(btn.dataset.case), action: action, body: data, photo: photo || null });
    }).then(function (r) {
      if (r.error) { // refused (the case moved on, not mine any more…): said on the card, not kept in the queue
        btn.disabled = false;
        box.textContent = r.error.failed;
        qDel(r.error.id).then(updateBadge);
        return;
      }
      if (r.queued) { stepQueued(card, action); toast(label + " 已保存在手机上，联网后自动发送", "info"); }
      else { toast(action === "accept" ? "已接收" : "已反馈", "ok"); }
    });
  });

  // --- online (在线): a heartbeat while the page is open, as the app's check-in -------------------------------------
  var HEARTBEAT_MS = 120000;
  function heartbeat() {
    if (document.hidden) { return; }
    var where = patrol && patrol.last ? { lon: patrol.last[0], lat: patrol.last[1] } : lastFix;
    (where ? Promise.resolve(where) : locate(5000)).then(function (w) {
      api("POST", "/api/v1/heartbeats", w || {}).catch(function () {});
    });
  }
  heartbeat();
  setInterval(heartbeat, HEARTBEAT_MS);

  // --- the queue panel, online/offline, timer ---------------------------------------------------------------------
  $("#queue-badge").addEventListener("click", function () { $("#queue-panel").classList.toggle("hidden"); });
  $("#queue-send").addEventListener("click", function () { flush(); });
  window.addEventListener("online", function () { setNet(true); flush(); });
  window.addEventListener("offline", function () { setNet(false); });
  if (!navigator.onLine) { setNet(false); }
  setInterval(flush, FLUSH_EVERY_MS);
  updateBadge().then(flush);
  renderPatrol();

  // --- pushes to this gridworker (his own room) ------------------------------------------------------------------
  if (window.io) {
    var socket = io("/live", { transports: ["websocket", "polling"], tryAllTransports: true });
    var WHY = { dispatch: "新任务派给你", rework: "案件被退回返工" };
    var onDue = function (d) { toast("有 " + d.count + " 位走访对象即将到期：" + d.names.join("、"), "push"); };
    // one "batch" per tick for his room: "g.case" (a task dispatched, a case returned) and "g.visit_due" items
    socket.on("batch", function (b) {
      var items = (b && b.items) || [], cases = 0;
      for (var i = 0; i < items.length; i++) {
        var d = items[i] && items[i].data;
        if (!d) { continue; }
        if (items[i].event === "g.case") {
          toast((WHY[d.action] || "案件有更新") + "：" + d.number + " " + (d.category || ""), "push");
          cases += 1;
        } else if (items[i].event === "g.visit_due") { onDue(d); }
      }
      if (cases) { refresh(); }
    });
    socket.on("g.visit_due", onDue); // told once to this page when it connects (a reply, not a room push)
  }

  // --- installable: the service worker of /g/ ------------------------------------------------------------------
  if ("serviceWorker" in navigator && body.dataset.sw) {
    navigator.serviceWorker.register(body.dataset.sw, { scope: body.dataset.scope }).catch(function () {});
  }

  window.gridworker = { flush: flush, queue: qAll, patrol: function () { return patrol; } };
})();
