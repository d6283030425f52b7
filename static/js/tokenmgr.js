/* Behaviours of the site and admin pages, without inline scripts (Content-Security-Policy: script-src 'self').
   - <button data-copy-target="ID" data-copied="Copié">: copies the value of the field #ID.
   - <input data-select-on-focus>: selects its whole value when focused.
   - <p data-auto-refresh="SECONDS"> with a #auto-refresh-toggle button: reloads the page every SECONDS unless the
     reader paused it (kept for the tab in sessionStorage); replaces a <meta refresh> nobody could stop. */
(function () {
  "use strict";
  function copy(button) {
    var input = document.getElementById(button.dataset.copyTarget);
    if (!input) { return; }
    input.select();
    var done = function () { if (button.dataset.copied) { button.textContent = button.dataset.copied; } };
    if (navigator.clipboard) { navigator.clipboard.writeText(input.value).then(done, done); }
    else { document.execCommand("copy"); done(); }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy-target]") : null;
    if (button) { copy(button); }
  });
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-select-on-focus]")) { event.target.select(); }
  });
  function autoRefresh(holder) {
    var key = "tkm-auto-refresh-paused:" + window.location.pathname;
    var button = document.getElementById("auto-refresh-toggle");
    var state = document.getElementById("auto-refresh-state");
    var seconds = parseInt(holder.dataset.autoRefresh, 10) || 60;
    var timer = null;
    function paused() { try { return window.sessionStorage.getItem(key) === "1"; } catch (e) { return false; } }
    function render() {
      var isPaused = paused();
      button.setAttribute("aria-pressed", isPaused ? "true" : "false");
      button.textContent = isPaused ? holder.dataset.resumeLabel : holder.dataset.pauseLabel;
      state.textContent = isPaused ? holder.dataset.pausedText : "";
      window.clearTimeout(timer);
      if (!isPaused) { timer = window.setTimeout(function () { window.location.reload(); }, seconds * 1000); }
    }
    button.addEventListener("click", function () {
      try { window.sessionStorage.setItem(key, paused() ? "0" : "1"); } catch (e) { /* storage refused */ }
      render();
    });
    render();
  }
  document.addEventListener("DOMContentLoaded", function () {
    var holder = document.querySelector("[data-auto-refresh]");
    if (holder && document.getElementById("auto-refresh-toggle")) { autoRefresh(holder); }
  });
})();
