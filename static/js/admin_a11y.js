/* Accessibility repairs of markup that Django's admin widgets build in the browser (loaded on every admin page).
 *
 * - select2 (autocomplete fields): the combobox and its search field get the name of the field's <label>; the
 *   "clear" cross inside the list of choices is hidden from assistive technologies (the keyboard clears with
 *   Backspace), so the list holds only list items.
 * - filter_horizontal/filter_vertical: the magnifier icon carrying an aria-label is given role="img".
 * - split date/time inputs: each input is named after its field and its part ("Date", "Heure").
 * - tabular inlines: each input of a row is named after its column header (the table has no <label>s).
 * Idempotent; re-applied when the widgets re-render (a MutationObserver).
 */
(function () {
  "use strict";

  function labelFor(id) {
    return id ? document.querySelector('label[for="' + CSS.escape(id) + '"]') : null;
  }

  function labelId(label) {
    if (!label.id) {
      label.id = "tkm-label-" + Math.random().toString(36).slice(2, 10);
    }
    return label.id;
  }

  function repairSelect2() {
    document.querySelectorAll("select.admin-autocomplete").forEach(function (select) {
      var container = select.nextElementSibling;
      if (!container || !container.classList.contains("select2")) {
        return;
      }
      var label = labelFor(select.id);
      var name = label ? label.textContent.replace(/\s*:\s*$/, "").trim() : select.name;
      var combo = container.querySelector(".select2-selection");
      if (combo && label) {
        combo.setAttribute("aria-labelledby", labelId(label));
      }
      var rendered = container.querySelector(".select2-selection__rendered[role=textbox]");
      if (rendered && label) {
        rendered.setAttribute("aria-labelledby", labelId(label));
      }
      container.querySelectorAll(".select2-search__field").forEach(function (field) {
        if (field.getAttribute("aria-label") !== name) {
          field.setAttribute("aria-label", name);
        }
      });
      container.querySelectorAll("ul.select2-selection__rendered > :not(li)").forEach(function (node) {
        node.setAttribute("aria-hidden", "true");
      });
    });
  }

  function repairFilterIcons() {
    document.querySelectorAll(".help-tooltip[aria-label]:not([role])").forEach(function (icon) {
      icon.setAttribute("role", "img");
    });
  }

  function repairSplitDateTime() {
    document.querySelectorAll("p.datetime").forEach(function (group) {
      var fieldset = group.closest("fieldset.flex-container, .form-row, .fieldBox");
      var legend = fieldset ? fieldset.querySelector("legend, label") : null;
      var field = legend ? legend.textContent.replace(/\s*:\s*$/, "").trim() : "";
      group.querySelectorAll("input.vDateField, input.vTimeField").forEach(function (input) {
        var part = input.previousSibling;
        while (part && part.nodeType === Node.ELEMENT_NODE && part.tagName === "BR") {
          part = part.previousSibling;
        }
        var partText = part && part.nodeType === Node.TEXT_NODE ? part.textContent.replace(/\s*:\s*$/, "").trim() : "";
        var name = [field, partText].filter(Boolean).join(" — ");
        if (name && input.getAttribute("aria-label") !== name) {
          input.setAttribute("aria-label", name);
        }
      });
    });
  }

  function repairTabularInlines() {
    document.querySelectorAll(".inline-group .tabular table").forEach(function (table) {
      var headers = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
        return th.textContent.trim();
      });
      table.querySelectorAll("tbody tr.form-row").forEach(function (row, index) {
        Array.prototype.forEach.call(row.children, function (cell, column) {
          var header = headers[column];
          if (!header) {
            return;
          }
          cell.querySelectorAll("input:not([type=hidden]), select, textarea").forEach(function (control) {
            if (control.labels && control.labels.length) {
              return;
            }
            var name = header + " (" + (index + 1) + ")";
            if (control.getAttribute("aria-label") !== name) {
              control.setAttribute("aria-label", name);
            }
          });
        });
      });
    });
  }

  function repairAll() {
    repairTabularInlines();
    repairSelect2();
    repairFilterIcons();
    repairSplitDateTime();
  }

  var pending = false;
  function schedule() {
    if (!pending) {
      pending = true;
      window.requestAnimationFrame(function () {
        pending = false;
        repairAll();
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    repairAll();
    new MutationObserver(schedule).observe(document.body, { childList: true, subtree: true });
  });
  window.addEventListener("load", repairAll);
})();
