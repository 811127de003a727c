// The console's behaviour: refresh parts of a page while runs are in flight, and draw charts.
(function () {
  "use strict";
  var charts = [];

  function drawCharts(root) {
    charts.forEach(function (chart) { chart.destroy(); });
    charts = [];
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var data = JSON.parse(canvas.dataset.chart);
      charts.push(new Chart(canvas, {
        type: "bar",
        data: { labels: data.labels, datasets: [{ label: "images", data: data.counts, backgroundColor: "#3b6fb6" }] },
        options: { animation: false, plugins: { legend: { display: false } },
                   scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
      }));
    });
  }

  // An element with data-refresh reloads its content from that URL every data-every ms. A run page
  // stops once the run has ended (the fragment then comes back without data-refresh on its parent).
  function follow(element) {
    var url = element.dataset.refresh;
    var every = parseInt(element.dataset.every || "2000", 10);
    function tick() {
      fetch(url, { headers: { "X-Requested-With": "fetch" } }).then(function (response) {
        return response.text().then(function (html) { return { ok: response.ok, html: html }; });
      }).then(function (result) {
        if (!result.ok) { setTimeout(tick, every * 2); return; }
        element.innerHTML = result.html;
        drawCharts(element);
        var ended = element.querySelector("#status") &&
          ["SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"].indexOf(element.querySelector("#status").textContent) >= 0;
        if (element.id === "run" && ended) { element.removeAttribute("data-refresh"); return; }
        setTimeout(tick, every);
      }).catch(function () { setTimeout(tick, every * 2); });
    }
    setTimeout(tick, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    document.querySelectorAll("[data-refresh]").forEach(follow);
  });
})();
