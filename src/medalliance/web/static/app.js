// MedAlliance web UI: the little script every page needs (no inline scripts: CSP).
(function () {
  "use strict";

  // HTMX requests carry the CSRF token as a header.
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) event.detail.headers["X-CSRF-Token"] = meta.content;
  });

  // Error answers to HTMX requests (403, 422, 500 …) are friendly fragments: show them.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400 && status < 600) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // Tabs loaded by HTMX: mark the one clicked as selected.
  document.addEventListener("click", function (event) {
    var tab = event.target.closest ? event.target.closest('[role="tab"]') : null;
    if (!tab || !tab.parentNode) return;
    Array.prototype.forEach.call(tab.parentNode.querySelectorAll('[role="tab"]'), function (t) {
      t.setAttribute("aria-selected", t === tab ? "true" : "false");
    });
  });

  // --- Drafts: what the user types in <form data-keep-draft id="…"> survives a
  // session timeout. Saved per user, page and form in localStorage; restored when the
  // form is shown again (after logging in again); removed once a submission went
  // through (a later page without the form).
  var PREFIX = "medalliance-draft:";
  var SKIP = { password: 1, hidden: 1, submit: 1, button: 1, file: 1 };

  function user() {
    return document.body.getAttribute("data-user") || "";
  }

  function keyFor(form) {
    return PREFIX + user() + ":" + window.location.pathname + ":" + form.id;
  }

  function fields(form) {
    return Array.prototype.filter.call(form.elements, function (el) {
      return el.name && !SKIP[el.type];
    });
  }

  function save(form, submitted) {
    if (!user()) return;
    var values = {};
    fields(form).forEach(function (el) {
      if (el.type === "checkbox" || el.type === "radio") {
        if (el.checked) values[el.name + "=" + el.value] = true;
      } else {
        values[el.name] = el.value;
      }
    });
    localStorage.setItem(keyFor(form), JSON.stringify({
      values: values, submitted: !!submitted, path: window.location.pathname, form: form.id
    }));
  }

  function restore(form) {
    var raw = localStorage.getItem(keyFor(form));
    if (!raw) return;
    var draft;
    try { draft = JSON.parse(raw); } catch (e) { return; }
    var restored = false;
    fields(form).forEach(function (el) {
      if (el.type === "checkbox" || el.type === "radio") {
        var on = !!draft.values[el.name + "=" + el.value];
        if (on !== el.checked) { el.checked = on; restored = true; }
      } else if (draft.values[el.name] !== undefined && draft.values[el.name] !== el.value) {
        el.value = draft.values[el.name];
        restored = true;
      }
    });
    draft.submitted = false;
    localStorage.setItem(keyFor(form), JSON.stringify(draft));
    if (restored) {
      var note = document.createElement("p");
      note.className = "flash flash-info draft-restored";
      note.setAttribute("role", "status");
      note.textContent = document.body.getAttribute("data-draft-restored");
      form.insertBefore(note, form.firstChild);
    }
  }

  function forgetSubmitted() {
    // A page that is neither the login page nor holds the drafted form: a draft
    // submitted from another page went through, so it is no longer needed.
    if (!user()) return;
    var mine = PREFIX + user() + ":";
    for (var i = localStorage.length - 1; i >= 0; i--) {
      var key = localStorage.key(i);
      if (!key || key.indexOf(mine) !== 0) continue;
      try {
        var draft = JSON.parse(localStorage.getItem(key));
        var here = draft.path === window.location.pathname && document.getElementById(draft.form);
        if (draft.submitted && !here) localStorage.removeItem(key);
      } catch (e) { localStorage.removeItem(key); }
    }
  }

  function setUp(root) {
    var forms = root.querySelectorAll ? root.querySelectorAll("form[data-keep-draft]") : [];
    Array.prototype.forEach.call(forms, function (form) {
      if (!form.id || form.dataset.draftBound) return;
      form.dataset.draftBound = "1";
      restore(form);
      form.addEventListener("input", function () { save(form, false); });
      form.addEventListener("change", function () { save(form, false); });
      form.addEventListener("submit", function () { save(form, true); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    forgetSubmitted();
    setUp(document);
  });
  document.addEventListener("htmx:afterSwap", function (event) { setUp(event.target); });
})();
