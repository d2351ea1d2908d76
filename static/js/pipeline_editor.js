// Progressive enhancement of the pipeline editor pages; each of them works without it.
// Loaded as a static file: the CSP allows no inline script, and nothing here evaluates strings.
(function () {
  "use strict";

  // "Add a row" under a settings table: copy the last row with empty inputs and the next form index,
  // and count it in the formset's TOTAL_FORMS so Django reads it.
  function addRow(prefix) {
    var body = document.getElementById(prefix + "-rows");
    var total = document.getElementById("id_" + prefix + "-TOTAL_FORMS");
    if (!body || !total || !body.rows.length) {
      return;
    }
    var index = parseInt(total.value, 10);
    var copy = body.rows[body.rows.length - 1].cloneNode(true);
    var numbered = new RegExp(prefix + "-\\d+-");
    copy.querySelectorAll("input, label").forEach(function (element) {
      ["id", "name", "for"].forEach(function (attribute) {
        var value = element.getAttribute(attribute);
        if (value) {
          element.setAttribute(attribute, value.replace(numbered, prefix + "-" + index + "-"));
        }
      });
      if (element.tagName === "INPUT") {
        element.value = "";
      } else {
        element.textContent = element.textContent.replace(/row \d+$/, "row " + (index + 1));
      }
    });
    copy.querySelectorAll(".error, .tone-warn").forEach(function (element) {
      element.remove();
    });
    body.appendChild(copy);
    total.value = String(index + 1);
    copy.querySelector("input").focus();
  }

  document.querySelectorAll("button[data-formset-add]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      addRow(button.getAttribute("data-formset-add"));
    });
  });

  // A destructive form asks once more; without script the server's own refusals still apply.
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) {
        event.preventDefault();
      }
    });
  });
})();
