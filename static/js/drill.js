// The drill-down: the custom date fields follow the period select; the trend chart is drawn from the JSON
// embedded in the page (no inline script: the CSP forbids it).
(function () {
  "use strict";

  function toggleCustom() {
    var select = document.getElementById("drill-period");
    var custom = document.getElementById("drill-custom");
    if (!select || !custom) { return; }
    var on = select.value === "custom";
    custom.hidden = !on;
    custom.querySelectorAll("input").forEach(function (input) { input.disabled = !on; });
  }

  function drawTrend() {
    var holder = document.getElementById("drill-trend");
    var source = document.getElementById("drill-trend-data");
    if (!holder || !source || typeof Plotly === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    var sameYear = data.days.length && data.days[0].slice(0, 4) === data.days[data.days.length - 1].slice(0, 4);
    var labels = data.days.map(function (d) { return sameYear ? d.slice(5) : d; });  // 11-02, or 2025-12-30
    var traces = [
      { x: labels, y: data.reported, name: (data.names && data.names.reported) || "上报事件", type: "bar",
        marker: { color: "#0b5cad" } },
      { x: labels, y: data.closed, name: (data.names && data.names.closed) || "当期结案", type: "scatter", mode: "lines+markers",
        line: { color: "#1a7f37", width: 2 } }
    ];
    var layout = {
      margin: { l: 48, r: 16, t: 8, b: 64 }, height: 280, barmode: "group",
      legend: { orientation: "h", x: 0, y: 1.15 },
      xaxis: { type: "category", tickangle: data.days.length > 14 ? -45 : 0 },
      yaxis: { rangemode: "tozero", title: { text: "件" } },
      font: { family: "system-ui, 'Noto Sans CJK SC', sans-serif", size: 12 }
    };
    Plotly.newPlot(holder, traces, layout, { displayModeBar: false, responsive: true });
    holder.setAttribute("data-drawn", "1");
  }

  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("drill-period");
    if (select) { select.addEventListener("change", toggleCustom); }
    toggleCustom();
    drawTrend();
  });
})();
