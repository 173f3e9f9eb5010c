// Launch and batch forms: one submit per form, uploads with progress, remembered
// "advanced" state, batch mode switching, Enter in the preset name, and "Copy as curl"
// and the cost estimate that follow the form. The forms work without this file.
(function () {
  "use strict";

  function csrf(form) {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // ---- one submit per form: a double click must not send the form twice ----
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("[data-launch-form]")) return;
    if (form.dataset.uploading && Number(form.dataset.uploading) > 0) {
      event.preventDefault();
      announce(form, "Wait for the upload to finish, then launch.");
      return;
    }
    if (form.dataset.submitting === "1") {
      event.preventDefault();
      return;
    }
    form.dataset.submitting = "1";
    // "Save preset" sends the same form elsewhere (formaction): it launches nothing.
    var launching = !(event.submitter && event.submitter.hasAttribute("formaction"));
    // Disabled after the browser has collected the form's data, so the button that was
    // pressed (e.g. "Launch anyway", name=confirmed) is still sent.
    setTimeout(function () {
      form.querySelectorAll("button[type=submit]:not(:disabled)").forEach(function (button) {
        button.disabled = true;
        button.dataset.disabledBySubmit = "1";
      });
      var primary = form.querySelector("[data-submit-once]");
      if (primary && launching) {
        primary.dataset.label = primary.textContent; // put back on pageshow
        primary.textContent = "Launching…";
      }
    }, 0);
  });
  // Back/forward cache: a page restored after a launch must be usable again. Only the
  // buttons disabled above come back: the page's own disabled ones stay off (the Enter
  // guard, a Launch the model's policy or retirement turned off).
  window.addEventListener("pageshow", function (event) {
    document.querySelectorAll("[data-launch-form]").forEach(function (form) {
      delete form.dataset.submitting;
      form.querySelectorAll("button[data-disabled-by-submit]").forEach(function (button) {
        button.disabled = false;
        delete button.dataset.disabledBySubmit;
      });
      var primary = form.querySelector("[data-submit-once]");
      // Its own label: "Launch" on the launch form, "Launch batch" on the batch form.
      if (primary && primary.dataset.label) {
        primary.textContent = primary.dataset.label;
        delete primary.dataset.label;
      }
      if (event.persisted) previewSoon(form, 0);
    });
  });

  // ---- Enter in a field marked data-enter-presses="#button" presses that button ----
  // (the preset name: Enter saves the preset). Enter in any other single-line field of a
  // launch form does nothing at all: see templates/runs/_enter_guard.html.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.isComposing) return;
    var field = event.target;
    if (!field.matches || !field.matches("[data-enter-presses]")) return;
    var button = document.querySelector(field.dataset.enterPresses);
    if (!button || button.disabled) return;
    event.preventDefault();
    button.click();
  });

  function announce(form, text) {
    var region = form.querySelector(".launch-actions .muted") || form.querySelector(".form-actions .muted");
    if (region) region.textContent = text;
  }

  // ---- uploads: sent as soon as a file is chosen, with progress; the URL fills the field ----
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("[data-upload] input[type=file]")) return;
    var box = input.closest("[data-upload]");
    var form = input.closest("form");
    var url = form && form.dataset.uploadUrl;
    if (!url || !input.files || !input.files.length || !window.FormData) return;
    Array.prototype.forEach.call(input.files, function (file) {
      upload(form, box, input, file, url);
    });
  });

  function upload(form, box, input, file, url) {
    var progress = box.querySelector(".upload__progress");
    var status = box.querySelector(".upload__status");
    var target = document.getElementById(box.dataset.target);
    var data = new FormData();
    data.append("file", file);
    data.append("kind", box.dataset.kind || "");
    var xhr = new XMLHttpRequest();
    form.dataset.uploading = String(Number(form.dataset.uploading || 0) + 1);
    progress.hidden = false;
    progress.value = 0;
    status.textContent = "Uploading " + file.name + "…";
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) progress.value = Math.round((100 * e.loaded) / e.total);
    });
    xhr.addEventListener("loadend", function () {
      form.dataset.uploading = String(Math.max(0, Number(form.dataset.uploading) - 1));
      var answer = {};
      try { answer = JSON.parse(xhr.responseText || "{}"); } catch (e) { answer = {}; }
      if (xhr.status === 200 && answer.url) {
        progress.value = 100;
        if (target) {
          if (box.hasAttribute("data-list") && target.value.trim()) {
            target.value = target.value.replace(/\s+$/, "") + "\n" + answer.url;
          } else {
            target.value = answer.url;
          }
        }
        // The file now lives at Runflow: do not send it a second time with the form.
        input.value = "";
        status.textContent = file.name + " uploaded.";
        previewSoon(form, 0); // the URL was set by script: no input event tells the preview
      } else {
        progress.hidden = true;
        status.textContent = answer.error || "The upload failed; it will be sent with the form instead.";
      }
    });
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", csrf(form));
    xhr.send(data);
  }

  // ---- the "advanced" section remembers whether it was open, per page ----
  document.querySelectorAll("details[data-advanced]").forEach(function (details) {
    var key = "advanced:" + location.pathname;
    try {
      if (!details.open && sessionStorage.getItem(key) === "1") details.open = true;
      details.addEventListener("toggle", function () {
        sessionStorage.setItem(key, details.open ? "1" : "0");
      });
    } catch (e) { /* storage disabled: the toggle still works */ }
  });

  // ---- batch form: show only the chosen way of varying ----
  function showMode(form) {
    var chosen = form.querySelector("input[name=mode]:checked");
    form.querySelectorAll(".batch-mode").forEach(function (section) {
      section.hidden = chosen ? section.dataset.mode !== chosen.value : false;
    });
  }
  document.querySelectorAll(".batch-modes").forEach(function (fieldset) {
    var form = fieldset.closest("form");
    showMode(form);
    fieldset.addEventListener("change", function () { showMode(form); });
  });

  // ---- "Copy as curl" and the cost estimate follow the form ----
  // The server reads the values with the launch's own form (types, defaults, what is left
  // out) and prices them with the launch's own pricing, so the copied command is what
  // a launch would send and the estimate what the policy will check. The key stays a
  // shell variable: the answer never holds it.
  var PREVIEW_DELAY_MS = 300;

  function previewSoon(form, delay) {
    if (!form.dataset.previewUrl || !window.fetch || !window.FormData) return;
    clearTimeout(form.previewTimer);
    form.previewTimer = setTimeout(function () { preview(form); }, delay);
  }

  function preview(form) {
    var body = new URLSearchParams();
    new FormData(form).forEach(function (value, name) {
      if (typeof value === "string") body.append(name, value); // files are not sent
    });
    var asked = (form.previewAsked = (form.previewAsked || 0) + 1);
    fetch(form.dataset.previewUrl, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf(form) },
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) {
        // An older answer arriving after a newer one must not win.
        if (answer && asked === form.previewAsked) showPreview(answer);
      })
      .catch(function () { /* offline for a moment: the next change asks again */ });
  }

  function showPreview(answer) {
    var curl = document.getElementById("launch-curl");
    if (curl && typeof answer.curl === "string") curl.textContent = answer.curl;
    var note = document.querySelector("[data-curl-note]");
    if (note) {
      note.textContent = answer.note || "";
      note.hidden = !answer.note;
    }
    var estimate = document.querySelector("[data-estimate]");
    var amount = estimate && estimate.querySelector("[data-estimate-value]");
    if (amount) {
      amount.textContent = answer.estimate || "";
      estimate.hidden = !answer.estimate;
    }
  }

  // Whether the browser put back values other than the page's (reload, history).
  function restored(form) {
    return Array.prototype.some.call(form.elements, function (field) {
      if (field.type === "checkbox" || field.type === "radio") return field.checked !== field.defaultChecked;
      if (field.options) {
        var initial = 0; // with no option marked selected, the first one is
        for (var i = 0; i < field.options.length; i++) {
          if (field.options[i].defaultSelected) { initial = i; break; }
        }
        return field.options.length > 0 && field.selectedIndex !== initial;
      }
      return "defaultValue" in field && field.type !== "file" && field.value !== field.defaultValue;
    });
  }

  document.querySelectorAll("form[data-preview-url]").forEach(function (form) {
    form.addEventListener("input", function () { previewSoon(form, PREVIEW_DELAY_MS); });
    form.addEventListener("change", function () { previewSoon(form, PREVIEW_DELAY_MS); });
    if (restored(form)) previewSoon(form, 0);
  });
})();
