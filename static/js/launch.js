// Launch and batch forms: one submit per form, uploads with progress, remembered
// "advanced" state, batch mode switching. The forms work without this file.
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
    // Disabled after the browser has collected the form's data, so the button that was
    // pressed (e.g. "Launch anyway", name=confirmed) is still sent.
    setTimeout(function () {
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        button.disabled = true;
      });
      var primary = form.querySelector("[data-submit-once]");
      if (primary) primary.textContent = "Launching…";
    }, 0);
  });
  // Back/forward cache: a page restored after a launch must be usable again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("[data-launch-form]").forEach(function (form) {
      delete form.dataset.submitting;
      form.querySelectorAll("button[type=submit]").forEach(function (button) {
        button.disabled = false;
      });
    });
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
})();
