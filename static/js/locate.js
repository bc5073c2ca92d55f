/* Locating a caller's event (issue 14 §3): a tap on the grids' drawing, or a standard address (标准地址)
 * picked from a search, fills the form's lon/lat (WGS-84) and its grid. The frame that turns SVG x/y back
 * into lon/lat comes from the server (commandcenter/positions.locate_map). The picker's data-lon, data-lat,
 * data-grid, data-address and data-ref name the inputs it fills (templates/_locate_picker.html): the 12345
 * form and the case page's 重新定位 (which sends the chosen standard address's id as data-ref). */
(function () {
  "use strict";

  var root = document.getElementById("locate");
  if (!root) { return; }
  var frame = JSON.parse(root.dataset.frame);
  var svg = root.querySelector("svg.locate-map");
  var point = root.querySelector(".locate-point");
  var status = root.querySelector(".locate-status");
  var search = root.querySelector("#address-search");
  var results = root.querySelector(".address-results");
  function input(name, fallback) {
    var id = root.dataset[name] === undefined ? fallback : root.dataset[name];
    return id ? document.getElementById(id) : null;
  }
  var lonInput = input("lon", "lon");
  var latInput = input("lat", "lat");
  var gridSelect = input("grid", "grid_id");
  var addressInput = input("address", "address");
  var refInput = input("ref", "");
  var chosenAddress = null; // the text a standard address put into addressInput
  var timer = null;

  function toLonLat(x, y) {
    return [frame.lon0 + (x - frame.off_x) / (frame.kx * frame.scale), frame.lat1 - (y - frame.off_y) / frame.scale];
  }
  function toXY(lon, lat) {
    return [frame.off_x + (lon - frame.lon0) * frame.kx * frame.scale, frame.off_y + (frame.lat1 - lat) * frame.scale];
  }
  function setGrid(id) {
    if (!gridSelect) { return; }
    gridSelect.value = id ? String(id) : "";
  }
  function mark(lon, lat) {
    var xy = toXY(lon, lat);
    point.setAttribute("cx", xy[0].toFixed(1));
    point.setAttribute("cy", xy[1].toFixed(1));
    lonInput.value = lon.toFixed(6);
    latInput.value = lat.toFixed(6);
  }

  svg.addEventListener("click", function (evt) {
    var ctm = svg.getScreenCTM();
    if (!ctm) { return; }
    var pt = svg.createSVGPoint();
    pt.x = evt.clientX;
    pt.y = evt.clientY;
    var p = pt.matrixTransform(ctm.inverse());
    var ll = toLonLat(p.x, p.y);
    mark(ll[0], ll[1]);
    if (refInput) { // a tapped point is no longer the standard address (the 12345 form keeps its text)
      refInput.value = "";
      if (addressInput && chosenAddress !== null && addressInput.value === chosenAddress) { addressInput.value = ""; }
    }
    chosenAddress = null;
    var grid = evt.target.closest ? evt.target.closest("path.locate-grid") : null;
    if (grid) {
      setGrid(grid.dataset.gridId);
      status.textContent = "已定位：" + grid.dataset.name + "（" + lonInput.value + ", " + latInput.value + "）";
    } else {
      setGrid("");
      status.textContent = "该位置不在本辖区的任何网格内，请重新点选";
    }
  });

  function choose(item) {
    mark(item.lon, item.lat);
    setGrid(item.grid_id);
    if (addressInput) { addressInput.value = item.address; chosenAddress = item.address; }
    if (refInput) { refInput.value = String(item.id); }
    results.innerHTML = "";
    status.textContent = "已选标准地址：" + item.address + (item.grid ? "（" + item.grid + "）" : "");
  }

  function runSearch() {
    var q = search.value.trim();
    if (!q) { results.innerHTML = ""; return; }
    fetch(root.dataset.searchUrl + "?q=" + encodeURIComponent(q), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (res) { return res.ok ? res.json() : { items: [] }; })
      .then(function (body) {
        results.innerHTML = "";
        if (!body.items.length) {
          var none = document.createElement("li");
          none.className = "muted small";
          none.textContent = "没有匹配的标准地址";
          results.appendChild(none);
          return;
        }
        body.items.forEach(function (item) {
          var li = document.createElement("li");
          var button = document.createElement("button");
          button.type = "button";
          button.className = "link address-choice";
          button.textContent = item.address + (item.grid ? " · " + item.grid : "");
          button.addEventListener("click", function () { choose(item); });
          li.appendChild(button);
          results.appendChild(li);
        });
      })
      .catch(function () { status.textContent = "检索失败，请稍后重试"; });
  }

  search.addEventListener("input", function () {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(runSearch, 250);
  });
  search.addEventListener("keydown", function (evt) {
    if (evt.key === "Enter") { evt.preventDefault(); runSearch(); } // not submitting the work order
  });
  if (lonInput.value && latInput.value) {
    var lon = parseFloat(lonInput.value), lat = parseFloat(latInput.value);
    if (isFinite(lon) && isFinite(lat)) { mark(lon, lat); }
  }
})();
