// Refreshes the live part of the page from /status.json every 2 s. Without this script
// the page is complete as served and reloads itself every 10 s.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var dot = document.getElementById("live-dot");
  var text = document.getElementById("live-text");
  var refreshes = 0;
  var busy = false;
  function clock(ms) {
    return new Date(ms).toISOString().slice(11, 19);
  }
  function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    fetch("/status.json", { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (s) {
        // Keep the evidence the reader opened.
        var open = {};
        live.querySelectorAll("details[open]").forEach(function (d) {
          open[d.getAttribute("data-key")] = true;
        });
        live.innerHTML = s.html;
        live.querySelectorAll("details[data-key]").forEach(function (d) {
          if (open[d.getAttribute("data-key")]) d.open = true;
        });
        refreshes += 1;
        document.body.setAttribute("data-refreshes", String(refreshes));
        dot.className = "dot on";
        text.textContent = "live · updated " + clock(s.generated_unix_ms);
      })
      .catch(function (e) {
        dot.className = "dot off";
        text.textContent = "not updating (" + e.message + ")";
      })
      .then(function () {
        busy = false;
      });
  }
  dot.className = "dot on";
  text.textContent = "live";
  setInterval(refresh, 2000);
  document.addEventListener("visibilitychange", refresh);
})();
