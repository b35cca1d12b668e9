// limner dashboard: lightbox, region outlines, live job progress. No dependencies.
"use strict";

(function () {
  // --- lightbox: any [data-zoom] control opens its image large; Escape or Close shuts it.
  function openLightbox(src, caption) {
    const dialog = document.getElementById("lightbox");
    const img = document.getElementById("lightbox-img");
    img.src = src;
    img.alt = caption || "Enlarged image";
    document.getElementById("lightbox-caption").textContent = caption || "";
    dialog.showModal();
  }

  document.addEventListener("click", function (event) {
    const trigger = event.target.closest("[data-zoom]");
    if (trigger) {
      event.preventDefault();
      openLightbox(trigger.dataset.zoom, trigger.dataset.caption);
      return;
    }
    const dialog = document.getElementById("lightbox");
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });

  // --- region outlines: hovering or focusing a bar (or a region chip) draws its bbox.
  function bboxOf(section, el) {
    if (el.dataset.bbox) return el.dataset.bbox;
    const bar = section.querySelector('.bar[data-region="' + el.dataset.region + '"]');
    return bar ? bar.dataset.bbox : null;
  }

  function outline(el, on) {
    const section = el.closest(".item");
    if (!section) return;
    const bbox = on ? bboxOf(section, el) : null;
    section.querySelectorAll("svg.overlay rect.hl").forEach(function (rect) {
      if (!bbox) {
        rect.classList.remove("on");
        return;
      }
      const [x0, y0, x1, y1] = bbox.split(",").map(Number);
      rect.setAttribute("x", x0);
      rect.setAttribute("y", y0);
      rect.setAttribute("width", x1 - x0);
      rect.setAttribute("height", y1 - y0);
      rect.classList.add("on");
    });
    section.querySelectorAll(".bar.active").forEach((b) => b.classList.remove("active"));
    if (on) {
      const bar = section.querySelector('.bar[data-region="' + el.dataset.region + '"]');
      if (bar) bar.classList.add("active");
    }
  }

  ["mouseover", "focusin"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      const el = event.target.closest && event.target.closest("[data-region]");
      if (el) outline(el, true);
    });
  });
  ["mouseout", "focusout"].forEach(function (type) {
    document.addEventListener(type, function (event) {
      const el = event.target.closest && event.target.closest("[data-region]");
      if (el && !(event.relatedTarget && el.contains(event.relatedTarget))) outline(el, false);
    });
  });

  // --- live progress of a running job; the page reloads once it has finished.
  function poll(job) {
    const bar = document.getElementById("job-progress");
    const text = document.getElementById("job-text");
    fetch(job.dataset.statusUrl, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok || !(r.headers.get("content-type") || "").includes("json")) {
          throw new Error("status " + r.status);
        }
        return r.json();
      })
      .then(function (s) {
        job.dataset.status = s.status;
        document.querySelectorAll("#job-status, [data-job-badge]").forEach(function (b) {
          b.textContent = s.status;
          b.className = "badge " + s.status;
        });
        bar.value = s.progress;
        if (s.status === "finished") {
          text.textContent = "Done — loading the explanation…";
          window.location.reload();
          return;
        }
        if (s.status === "failed") {
          text.textContent = s.error || "The job failed.";
          return;
        }
        text.textContent =
          s.status === "queued"
            ? "Waiting for a worker…"
            : Math.round(s.progress * 100) + "% of the model evaluations done…";
        setTimeout(poll, 500, job);
      })
      .catch(function () {
        text.textContent = "Lost touch with the server; retrying…";
        setTimeout(poll, 2000, job);
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    const job = document.getElementById("job");
    if (job && job.dataset.status !== "failed" && job.dataset.status !== "finished") {
      setTimeout(poll, 300, job);
    }
    const next = document.querySelector("[data-auto-follow]");
    if (next) window.location.replace(next.getAttribute("href"));
  });
  // --- view form: changing a setting swaps every view pane's image (drawn by the server from
  // the stored explanation, nothing recomputed); without JS the form reloads the page.
  document.addEventListener("DOMContentLoaded", function () {
    const viewForm = document.getElementById("view-form");
    if (!viewForm) return;
    const showView = function (event) {
      if (event) event.preventDefault();
      if (!viewForm.reportValidity()) return;
      const data = new FormData(viewForm);
      const query = new URLSearchParams(data).toString();
      const words = [String(data.get("type")).toLowerCase(), data.get("polarity"), data.get("color_map")];
      document.querySelectorAll("img.view-pane").forEach(function (img) {
        img.src = img.dataset.viewSrc + "?" + query;
        img.alt = img.dataset.viewLabel + " (" + words.join(", ") + ")";
        const zoom = img.closest("[data-zoom]");
        if (zoom) zoom.dataset.zoom = img.src;
        const caption = img.closest("figure").querySelector("figcaption");
        if (caption) caption.textContent = "View — " + words.join(", ");
      });
      history.replaceState(null, "", viewForm.action + "?" + query);
    };
    viewForm.addEventListener("change", showView);
    viewForm.addEventListener("submit", showView);
  });
  // --- an object detector's boxes: each button is placed over its box of the image (left, top,
  // width, height in percent of the image; set here because the page allows no inline styles)
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll(".boxes .box[data-place]").forEach(function (button) {
      const place = button.dataset.place.split(" ");
      ["left", "top", "width", "height"].forEach(function (side, i) {
        button.style[side] = place[i] + "%";
      });
    });
  });
})();
