/* The assessment page: a bar chart of the towns' totals, drawn from the JSON in #assessment-data. */
(function () {
  "use strict";

  var holder = document.getElementById("assessment-chart");
  var source = document.getElementById("assessment-data");
  if (!holder || !source || !window.Plotly) { return; }
  var data;
  try {
    data = JSON.parse(source.textContent);
  } catch (e) {
    return;
  }
  if (!data.towns || data.towns.length === 0) {
    holder.textContent = "暂无数据";
    return;
  }
  var labels = data.totals.map(function (t, i) { return t.toFixed(2) + "（第" + data.ranks[i] + "名）"; });
  window.Plotly.newPlot(holder, [{
    type: "bar",
    x: data.towns,
    y: data.totals,
    text: labels,
    textposition: "auto",
    hovertemplate: "%{x}<br>总分 %{y:.2f}<extra></extra>",
    marker: { color: "#0b5cad" }
  }], {
    margin: { l: 50, r: 20, t: 20, b: 80 },
    yaxis: { title: { text: "总分" }, range: [0, 100], fixedrange: true },
    xaxis: { fixedrange: true, automargin: true },
    font: { family: "system-ui, 'PingFang SC', 'Microsoft YaHei', sans-serif" }
  }, { displayModeBar: false, responsive: true });
}());
