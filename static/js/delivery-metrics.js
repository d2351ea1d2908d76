/* Charts of the delivery metrics page, drawn from the json_script block "delivery-metrics-data".
 * Loaded as a static file (the CSP allows no inline script); Chart.js 4 needs no eval. Every number
 * drawn here is also in a table on the page, so the charts are a convenience, not the only record. */
(function () {
  "use strict";

  function draw() {
    var source = document.getElementById("delivery-metrics-data");
    if (!source || typeof window.Chart === "undefined") {
      return;
    }
    var data = JSON.parse(source.textContent);
    // Colours with enough contrast on white (WCAG AA for large graphical objects).
    var deployed = "#1d5fbf";
    var failed = "#a3161b";
    var common = {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
    };

    function chart(id, config) {
      var canvas = document.getElementById(id);
      if (canvas && config.data.labels.length) {
        new window.Chart(canvas, config);
      }
    }

    chart("chart-over-time", {
      type: "bar",
      data: {
        labels: data.over_time.labels,
        datasets: [
          { label: "Deployments", data: data.over_time.deployments, backgroundColor: deployed },
          { label: "Failed or rolled back", data: data.over_time.failures, backgroundColor: failed },
        ],
      },
      options: common,
    });

    function perGroup(id, group) {
      chart(id, {
        type: "bar",
        data: {
          labels: group.labels,
          datasets: [
            // A lower order is drawn on top: the failure rate stays visible over the bars.
            { label: "Deployments", data: group.deployments, backgroundColor: deployed, yAxisID: "y", order: 1 },
            {
              label: "Change failure rate (%)",
              data: group.failure_percent,
              type: "line",
              borderColor: failed,
              backgroundColor: failed,
              yAxisID: "percent",
              order: 0,
              pointRadius: 5,
            },
          ],
        },
        options: {
          responsive: true,
          maintainAspectRatio: false,
          animation: false,
          scales: {
            y: { beginAtZero: true, ticks: { precision: 0 }, position: "left" },
            percent: { beginAtZero: true, max: 100, position: "right", grid: { drawOnChartArea: false } },
          },
        },
      });
    }

    perGroup("chart-by-solution", data.by_solution);
    perGroup("chart-by-environment", data.by_environment);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
