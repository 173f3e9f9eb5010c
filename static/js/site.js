// Small progressive enhancements. Every page works without this file.
(function () {
  "use strict";

  // Close an open <details> menu when clicking elsewhere or pressing Escape.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      menu.removeAttribute("open");
      menu.querySelector("summary").focus();
    });
  });

  // Copy buttons: <button data-copy="text"> or data-copy-from="#element-id".
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy], [data-copy-from]");
    if (!button || !navigator.clipboard) return;
    var text = button.dataset.copy;
    if (button.dataset.copyFrom) {
      var source = document.querySelector(button.dataset.copyFrom);
      text = source ? (source.value || source.textContent) : "";
    }
    navigator.clipboard.writeText(text).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // Confirmation for destructive forms: <form data-confirm="Really?">.
  document.addEventListener("submit", function (event) {
    var message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  }, true);

  // Relative times: <time datetime="..." data-relative>. The exact time stays in the title.
  var units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
  var format = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  function refreshTimes(root) {
    if (!format) return;
    (root || document).querySelectorAll("time[data-relative]").forEach(function (el) {
      var when = Date.parse(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      if (!el.title) el.title = new Date(when).toLocaleString();
      var seconds = Math.round((when - Date.now()) / 1000);
      for (var i = 0; i < units.length; i++) {
        if (Math.abs(seconds) >= units[i][1] || units[i][0] === "second") {
          el.textContent = format.format(Math.round(seconds / units[i][1]), units[i][0]);
          break;
        }
      }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { refreshTimes(); });
  document.addEventListener("htmx:afterSwap", function (event) { refreshTimes(event.target); });
  setInterval(refreshTimes, 30000);
})();
