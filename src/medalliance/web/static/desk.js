// The monitoring desk: one ECharts line chart per patient from its data-chart JSON
// (no inline script: CSP), redrawn after each refresh; the refresh waits while the
// user is typing a note.
(function () {
  "use strict";

  function hasSteps(data) {
    return data.series.some(function (s) { return s.measurement === "steps"; });
  }

  function draw(root) {
    if (!window.echarts) return;
    root.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      var data;
      try { data = JSON.parse(el.getAttribute("data-chart")); } catch (e) { return; }
      var chart = window.echarts.getInstanceByDom(el) || window.echarts.init(el, null, { renderer: "canvas" });
      chart.setOption({
        animation: false,
        grid: { left: 40, right: 44, top: 28, bottom: 22 },
        tooltip: { trigger: "axis" },
        legend: { top: 0, textStyle: { fontSize: 11 } },
        xAxis: { type: "time" },
        // Steps (thousands) get their own axis on the right, or they flatten the rest.
        yAxis: [{ type: "value", scale: true }, { type: "value", scale: true, show: hasSteps(data) }],
        series: data.series.map(function (s) {
          return {
            name: s.name, type: "line", showSymbol: true, symbolSize: 4, data: s.data,
            yAxisIndex: s.measurement === "steps" ? 1 : 0
          };
        })
      });
      el.setAttribute("data-drawn", "1");
    });
  }

  function dispose(root) {
    if (!window.echarts) return;
    root.querySelectorAll(".chart[data-chart]").forEach(function (el) {
      var chart = window.echarts.getInstanceByDom(el);
      if (chart) chart.dispose();
    });
  }

  function busy(panel) {
    var active = document.activeElement;
    if (active && panel.contains(active) && active.tagName === "INPUT") return true;
    return Array.prototype.some.call(panel.querySelectorAll('input[name="note"]'), function (i) {
      return i.value !== "";
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var panel = document.getElementById("desk-panel");
    if (panel && event.detail.elt === panel && busy(panel)) event.preventDefault();
  });
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "desk-panel") dispose(event.detail.target);
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "desk-panel") draw(event.detail.target);
  });
  window.addEventListener("resize", function () {
    if (!window.echarts) return;
    document.querySelectorAll(".chart[data-drawn]").forEach(function (el) {
      var chart = window.echarts.getInstanceByDom(el);
      if (chart) chart.resize();
    });
  });
})();
