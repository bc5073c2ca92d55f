/* 积分排名: the horizontal bar chart of totals, drawn from the JSON block the page embeds
 * (#points-chart-data: {title, names, kinds: [{key, name, values}], totals}). One stacked bar per place,
 * one colour per kind of points, highest total at the top. */
(function () {
  "use strict";
  var el = document.getElementById("points-chart");
  var source = document.getElementById("points-chart-data");
  if (!el || !source || !window.Plotly) { return; }
  var data;
  try { data = JSON.parse(source.textContent); } catch (e) { return; }
  if (!data.names || !data.names.length) { return; }

  // order by total, highest first; Plotly draws the first category at the bottom, so reverse
  var order = data.names.map(function (_, i) { return i; });
  order.sort(function (a, b) { return data.totals[b] - data.totals[a]; });
  order.reverse();
  var names = order.map(function (i) { return data.names[i]; });
  var colours = ["#0b5cad", "#9f0d24", "#e08a00", "#c0392b", "#6b2fa0", "#1e8449", "#5d6d7e"];

  var traces = data.kinds.map(function (kind, k) {
    return {
      type: "bar", orientation: "h", name: kind.name, y: names,
      x: order.map(function (i) { return kind.values[i]; }),
      marker: { color: colours[k % colours.length] },
      hovertemplate: "%{y}<br>" + kind.name + "：%{x:.2f}<extra></extra>"
    };
  });
  var height = Math.max(320, 26 * names.length + 120);
  el.style.height = height + "px";
  Plotly.newPlot(el, traces, {
    barmode: "stack", height: height, margin: { l: 160, r: 20, t: 10, b: 40 },
    legend: { orientation: "h", y: -0.08 }, xaxis: { title: { text: "积分" }, rangemode: "tozero" },
    yaxis: { automargin: true }, font: { family: "Noto Sans CJK SC, Microsoft YaHei, sans-serif" }
  }, { displaylogo: false, showSendToCloud: false, typesetMath: false, responsive: true, displayModeBar: false });
})();
