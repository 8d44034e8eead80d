// The prescription editor: a picked herb (from the finder or a suggestion) goes into
// the first empty herb line; "add a line" copies the last empty line. No inline code
// (CSP): everything is wired here.
(function () {
  "use strict";

  function emptyRow(table) {
    var rows = table.querySelectorAll("tbody tr");
    for (var i = 0; i < rows.length; i++) {
      var first = rows[i].querySelector("input");
      if (first && !first.value) return rows[i];
    }
    return null;
  }

  function addRow(table) {
    var body = table.querySelector("tbody");
    var last = body.lastElementChild;
    var copy = last.cloneNode(true);
    var index = body.children.length;
    copy.querySelectorAll("input").forEach(function (input) {
      input.name = input.name.replace(/-\d+$/, "-" + index);
      input.value = "";
      input.removeAttribute("aria-invalid");
    });
    copy.querySelectorAll(".field-error").forEach(function (p) { p.remove(); });
    var number = copy.querySelector("td.muted");
    if (number) number.textContent = String(index + 1);
    body.appendChild(copy);
    if (window.htmx) window.htmx.process(copy);
    return copy;
  }

  document.addEventListener("click", function (event) {
    var pick = event.target.closest(".herb-pick");
    if (pick) {
      var table = document.getElementById("herb-lines");
      if (!table) return;
      var row = emptyRow(table) || addRow(table);
      var name = row.querySelector(".herb-name");
      var dose = row.querySelector(".herb-dose");
      name.value = pick.getAttribute("data-herb");
      name.dispatchEvent(new Event("input", { bubbles: true }));
      document.body.dispatchEvent(new CustomEvent("herbPicked", { bubbles: true }));
      if (dose) dose.focus();
      var finder = document.getElementById("herb-finder");
      if (finder && pick.closest("#herb-hits")) {
        finder.value = "";
        document.getElementById("herb-hits").innerHTML = "";
      }
      return;
    }
    var adder = event.target.closest("[data-add-row]");
    if (adder) {
      var target = document.getElementById(adder.getAttribute("data-add-row"));
      if (target) addRow(target).querySelector("input").focus();
    }
  });
})();
