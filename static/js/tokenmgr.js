/* Behaviours of the site and admin pages, without inline scripts (Content-Security-Policy: script-src 'self').
   - <button data-copy-target="ID" data-copy-status="ID2" data-copied="Copié" data-copy-failed="…" hidden>: shown
     once this script runs; copies the value of the field #ID with the Clipboard API and says so in #ID2 (a live
     region). Without the script the button stays hidden and the field stays selectable.
   - <input data-select-on-focus>: selects its whole value when focused.
   - <form data-secret-prefix="tkm_" data-display-prefix-length="12" data-secret-form="ID">: a whole secret typed in its `q` field is sent by the
     POST form #ID instead, so that it never appears in an address.
   - <p data-auto-refresh="SECONDS"> with a #auto-refresh-toggle button: reloads the page every SECONDS unless the
     reader paused it (kept for the tab in sessionStorage); replaces a <meta refresh> nobody could stop. */
(function () {
  "use strict";

  function say(button, text, failed) {
    var status = document.getElementById(button.dataset.copyStatus);
    if (!status) { return; }
    status.textContent = "";
    status.classList.toggle("tkm-copy-status--error", Boolean(failed));
    // Emptied then filled on the next frame: screen readers announce a repeated "Copié" too.
    window.requestAnimationFrame(function () { status.textContent = text || ""; });
  }

  function legacyCopy(input) {
    try { return document.execCommand("copy"); } catch (e) { return false; }
  }

  function copy(button) {
    var input = document.getElementById(button.dataset.copyTarget);
    if (!input) { return; }
    input.focus();
    input.select();
    var done = function () { say(button, button.dataset.copied, false); };
    var failed = function () {
      input.select();
      say(button, button.dataset.copyFailed, true);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () {
        if (legacyCopy(input)) { done(); } else { failed(); }
      });
    } else if (legacyCopy(input)) { done(); } else { failed(); }
  }

  function enable() {
    var buttons = document.querySelectorAll("[data-copy-target][hidden]");
    for (var i = 0; i < buttons.length; i++) { buttons[i].hidden = false; }
  }

  function looksLikeSecret(form, value) {
    // The server's rule (tokens.credentials.looks_like_full_secret): the prefix, and longer than a display prefix.
    var prefix = form.dataset.secretPrefix;
    var shown = Number(form.dataset.displayPrefixLength || 0);
    return Boolean(prefix) && value.indexOf(prefix) === 0 && value.length > shown;
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
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.dataset || !form.dataset.secretForm || !form.elements.q) { return; }
    var value = form.elements.q.value.trim();
    var target = document.getElementById(form.dataset.secretForm);
    if (!target || !looksLikeSecret(form, value)) { return; }
    event.preventDefault();
    form.elements.q.value = "";
    target.elements.secret.value = value;
    target.submit();
  });
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", enable); } else { enable(); }
})();
