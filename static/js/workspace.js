// Workspace enhancements: lightbox, tab-title progress, opt-in desktop notifications,
// follow-tail for logs and selection helpers. Every page reads fine without this file.
// No data from runs is ever parsed as HTML here: text goes through textContent only.
(function () {
  "use strict";

  var IN_FLIGHT = { pending: 1, queued: 1, dispatching: 1, running: 1 };
  var STATUS_WORDS = {
    pending: "Pending", queued: "Queued", dispatching: "Dispatching", running: "Running",
    succeeded: "Succeeded", partial_succeeded: "Partly succeeded", failed: "Failed", canceled: "Canceled"
  };
  var NOTIFY_KEY = "runflow-notify";
  var baseTitle = document.title;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  // ------------------------------------------------------------------ lightbox
  var box = null;
  var items = [];
  var index = 0;
  var opener = null;

  function buildLightbox() {
    box = el("dialog", "lightbox");
    box.setAttribute("aria-label", "Image viewer");
    var figure = el("figure", "lightbox__figure");
    var stage = el("div", "lightbox__stage");
    var image = el("img", "lightbox__image");
    image.alt = "";
    var prev = el("button", "lightbox__nav lightbox__nav--prev", "‹");
    prev.type = "button";
    prev.setAttribute("aria-label", "Previous image");
    var next = el("button", "lightbox__nav lightbox__nav--next", "›");
    next.type = "button";
    next.setAttribute("aria-label", "Next image");
    stage.append(image, prev, next);
    var bar = el("figcaption", "lightbox__bar");
    var caption = el("span", "lightbox__caption");
    var dims = el("span", "muted small lightbox__dims");
    var position = el("span", "muted small lightbox__position");
    var runLink = el("a", "button button--small lightbox__run", "Open run");
    var download = el("a", "button button--small lightbox__download", "Download");
    download.setAttribute("download", "");
    var close = el("button", "button button--small lightbox__close", "Close");
    close.type = "button";
    bar.append(caption, dims, position, runLink, download, close);
    figure.append(stage, bar);
    box.append(figure);
    document.body.append(box);

    prev.addEventListener("click", function () { show(index - 1); });
    next.addEventListener("click", function () { show(index + 1); });
    close.addEventListener("click", function () { box.close(); });
    box.addEventListener("click", function (event) { if (event.target === box) box.close(); });
    box.addEventListener("close", function () {
      image.removeAttribute("src");
      if (opener && document.body.contains(opener)) opener.focus();
    });
    box.addEventListener("keydown", function (event) {
      if (event.key === "ArrowRight") { show(index + 1); event.preventDefault(); }
      else if (event.key === "ArrowLeft") { show(index - 1); event.preventDefault(); }
      else if (event.key === "Home") { show(0); event.preventDefault(); }
      else if (event.key === "End") { show(items.length - 1); event.preventDefault(); }
    });
    image.addEventListener("load", function () {
      var link = items[index];
      if (link && !link.dataset.width) dims.textContent = image.naturalWidth + "×" + image.naturalHeight;
    });
  }

  function show(i) {
    if (!items.length) return;
    index = Math.max(0, Math.min(items.length - 1, i));
    var link = items[index];
    var image = box.querySelector(".lightbox__image");
    image.src = link.getAttribute("href");
    var thumb = link.querySelector("img");
    image.alt = thumb ? thumb.alt : "";
    box.querySelector(".lightbox__caption").textContent = link.dataset.caption || "";
    box.querySelector(".lightbox__dims").textContent =
      link.dataset.width && link.dataset.height ? link.dataset.width + "×" + link.dataset.height : "";
    box.querySelector(".lightbox__position").textContent = (index + 1) + " of " + items.length;
    var runLink = box.querySelector(".lightbox__run");
    runLink.hidden = !link.dataset.runUrl;
    if (link.dataset.runUrl) runLink.href = link.dataset.runUrl;
    var download = box.querySelector(".lightbox__download");
    download.href = link.dataset.download || link.getAttribute("href");
    box.querySelector(".lightbox__nav--prev").disabled = index === 0;
    box.querySelector(".lightbox__nav--next").disabled = index === items.length - 1;
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest && event.target.closest("a[data-lightbox]");
    if (!link || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    if (typeof HTMLDialogElement !== "function") return; // the plain link still opens the file
    event.preventDefault();
    if (!box) buildLightbox();
    items = Array.prototype.slice.call(document.querySelectorAll("a[data-lightbox]"));
    opener = link;
    if (!box.open) box.showModal();
    show(items.indexOf(link));
    box.querySelector(".lightbox__close").focus();
  });

  // ------------------------------------------------------------------ status watching
  var known = {};

  function statusElements() {
    return document.querySelectorAll("[data-run-uuid][data-run-status]");
  }

  function updateTitle() {
    var region = document.querySelector("[data-title-progress]");
    if (!region) return;
    if (region.dataset.titleProgress === "run") {
      var status = region.dataset.runStatus;
      var word = STATUS_WORDS[status] || status;
      document.title = (IN_FLIGHT[status] ? "⏳ " : "") + word + " · " + baseTitle;
      return;
    }
    var flying = 0;
    statusElements().forEach(function (node) { if (IN_FLIGHT[node.dataset.runStatus]) flying += 1; });
    document.title = flying ? "(" + flying + " running) " + baseTitle : baseTitle;
  }

  function notifyEnabled() {
    return window.Notification && Notification.permission === "granted" &&
      window.localStorage && localStorage.getItem(NOTIFY_KEY) === "1";
  }

  function notify(node, status) {
    if (!notifyEnabled()) return;
    var label = node.dataset.runLabel || "Your run";
    var link = node.querySelector("a.run-link");
    var target = link ? link.href : window.location.href;
    var note = new Notification((STATUS_WORDS[status] || status) + ": " + label, {
      body: status === "succeeded" ? "Its outputs are ready." : "Open it to see what happened.",
      tag: "run-" + node.dataset.runUuid
    });
    note.addEventListener("click", function () {
      window.focus();
      if (target !== window.location.href) window.location.href = target;
      note.close();
    });
  }

  function scanStatuses(initial) {
    statusElements().forEach(function (node) {
      var uuid = node.dataset.runUuid;
      var status = node.dataset.runStatus;
      var before = known[uuid];
      known[uuid] = status;
      if (initial || !before || before === status) return;
      if (node.classList.contains("run-row")) node.classList.add("is-updated");
      if (IN_FLIGHT[before] && !IN_FLIGHT[status] && node.hasAttribute("data-run-mine")) notify(node, status);
    });
    updateTitle();
  }

  function setupNotifyButtons() {
    document.querySelectorAll("[data-notify-toggle]").forEach(function (button) {
      if (!window.Notification || !window.localStorage) return;
      button.hidden = false;
      button.setAttribute("aria-pressed", notifyEnabled() ? "true" : "false");
      button.textContent = notifyEnabled() ? "Notifications on" : "Notify me when my runs finish";
      if (button.dataset.bound) return;
      button.dataset.bound = "1";
      button.addEventListener("click", function () {
        if (notifyEnabled()) {
          localStorage.setItem(NOTIFY_KEY, "0");
          setupNotifyButtons();
          return;
        }
        Notification.requestPermission().then(function (permission) {
          localStorage.setItem(NOTIFY_KEY, permission === "granted" ? "1" : "0");
          setupNotifyButtons();
        });
      });
    });
  }

  // ------------------------------------------------------------------ logs: follow the tail
  function logBox() { return document.getElementById("log-lines"); }
  function followBox() { return document.querySelector("[data-follow]"); }

  function stickToBottom() {
    var lines = logBox();
    var follow = followBox();
    if (lines && follow && follow.checked) lines.scrollTop = lines.scrollHeight;
  }

  function setupFollow() {
    var lines = logBox();
    var follow = followBox();
    if (!lines || !follow) return;
    follow.closest("label").hidden = false;
    lines.addEventListener("scroll", function () {
      // Scrolling up to read pauses following; scrolling back to the end resumes it.
      var atEnd = lines.scrollHeight - lines.scrollTop - lines.clientHeight < 24;
      follow.checked = atEnd;
    });
    follow.addEventListener("change", stickToBottom);
    stickToBottom();
  }

  // ------------------------------------------------------------------ selections
  function refreshSelection(form) {
    var checked = 0;
    Array.prototype.forEach.call(form.elements, function (input) {
      if (input.type === "checkbox" && input.checked && (input.name === "runs" || input.name === "outputs")) checked += 1;
    });
    var counter = form.querySelector("[data-selection-count]") ||
      (form.parentNode && form.parentNode.querySelector("[data-selection-count]"));
    if (counter) {
      if (!counter.dataset.idle) counter.dataset.idle = counter.textContent;
      counter.textContent = checked ? checked + " selected" : counter.dataset.idle;
    }
    form.querySelectorAll("[data-needs]").forEach(function (button) {
      var range = button.dataset.needs.split("-");
      button.disabled = checked < Number(range[0]) || checked > Number(range[1]);
    });
  }

  function setupSelections() {
    document.querySelectorAll("form[data-selection]").forEach(refreshSelection);
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (input.type !== "checkbox" || !input.form || !input.form.hasAttribute("data-selection")) return;
    refreshSelection(input.form);
  });

  // ------------------------------------------------------------------ filters
  // Empty filters stay out of the address, so a bookmarked view reads like what it shows.
  document.addEventListener("htmx:configRequest", function (event) {
    var source = event.detail.elt;
    if (!source || !source.matches || !source.matches("form.filters") || event.detail.verb !== "get") return;
    var params = event.detail.parameters;
    Object.keys(params).forEach(function (name) {
      if (params[name] === "") delete params[name];
    });
  });

  // ------------------------------------------------------------------ polls that lose access
  // Signed out meanwhile: the poll was redirected to the sign-in page. Go there for real
  // instead of swapping a whole login page into a region.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.responseURL && xhr.responseURL.indexOf("/accounts/login/") !== -1) {
      event.detail.shouldSwap = false;
      window.location.assign(xhr.responseURL);
    }
  });
  // Removed from the team meanwhile (404/403): stop polling quietly. A 5xx may be a passing
  // hiccup, so polling carries on through those.
  document.addEventListener("htmx:responseError", function (event) {
    var source = event.detail.elt;
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status >= 400 && status < 500 && source && source.classList && source.classList.contains("poller")) {
      source.remove();
    }
  });

  // ------------------------------------------------------------------ wiring
  document.addEventListener("DOMContentLoaded", function () {
    scanStatuses(true);
    setupNotifyButtons();
    setupFollow();
    setupSelections();
  });

  document.addEventListener("htmx:oobAfterSwap", function (event) {
    // site.js refreshes relative times on htmx:afterSwap only; out-of-band regions need it too.
    var swapped = event.target;
    if (swapped && swapped.nodeType === 1) {
      swapped.dispatchEvent(new CustomEvent("htmx:afterSwap", { bubbles: true }));
    }
  });

  document.addEventListener("htmx:afterSettle", function () {
    scanStatuses(false);
    setupNotifyButtons();
    setupSelections();
    stickToBottom();
  });
})();
