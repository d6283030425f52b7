/* Behaviours of the site and admin pages, without inline scripts (Content-Security-Policy: script-src 'self').
   - <button data-copy-target="ID" data-copied="Copié">: copies the value of the field #ID.
   - <input data-select-on-focus>: selects its whole value when focused. */
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
})();
