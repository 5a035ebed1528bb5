// Zoom and pan for the lineage pictures. Each picture is drawn at its natural size (12 px labels)
// inside a scrolling viewport, which works without this script; the script adds zoom buttons,
// Ctrl + wheel zoom around the pointer, dragging to pan, and brings the page's own model into view.
// A classic script (not a module), so it also runs on a site opened from file://.
(function () {
  "use strict";
  var STEP = 1.25, MIN = 0.2, MAX = 3;

  function setUp(figure) {
    var viewport = figure.querySelector(".lg-viewport");
    var svg = viewport && viewport.querySelector("svg");
    var bar = figure.querySelector(".lg-zoombar");
    if (!svg || !bar) return;
    var box = svg.viewBox.baseVal;
    var scale = 1;
    var readout = bar.querySelector(".lg-zoom-level");

    function zoom(next, cx, cy) {
      next = Math.min(MAX, Math.max(MIN, next));
      // Keep the point under (cx, cy) (viewport coordinates) where it is.
      var px = (viewport.scrollLeft + cx) / scale, py = (viewport.scrollTop + cy) / scale;
      scale = next;
      svg.setAttribute("width", Math.round(box.width * scale));
      svg.setAttribute("height", Math.round(box.height * scale));
      viewport.scrollLeft = px * scale - cx;
      viewport.scrollTop = py * scale - cy;
      if (readout) readout.textContent = Math.round(scale * 100) + "%";
    }

    function centre() {
      return [viewport.clientWidth / 2, viewport.clientHeight / 2];
    }

    bar.hidden = false;
    bar.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-zoom]");
      if (!button) return;
      var c = centre(), how = button.getAttribute("data-zoom");
      if (how === "in") zoom(scale * STEP, c[0], c[1]);
      else if (how === "out") zoom(scale / STEP, c[0], c[1]);
      else if (how === "fit") zoom(Math.min(1, viewport.clientWidth / box.width, viewport.clientHeight / box.height), 0, 0);
      else zoom(1, c[0], c[1]);
    });
    viewport.addEventListener("wheel", function (event) {
      if (!event.ctrlKey) return; // a plain wheel scrolls the page as usual
      event.preventDefault();
      var r = viewport.getBoundingClientRect();
      zoom(scale * (event.deltaY < 0 ? STEP : 1 / STEP), event.clientX - r.left, event.clientY - r.top);
    }, { passive: false });

    var drag = null, moved = false;
    viewport.addEventListener("pointerdown", function (event) {
      if (event.button !== 0 || event.pointerType === "touch") return; // touch scrolls natively
      drag = { x: event.clientX, y: event.clientY, left: viewport.scrollLeft, top: viewport.scrollTop };
      moved = false;
    });
    window.addEventListener("pointermove", function (event) {
      if (!drag) return;
      var dx = event.clientX - drag.x, dy = event.clientY - drag.y;
      if (!moved && Math.abs(dx) + Math.abs(dy) < 5) return;
      moved = true;
      viewport.classList.add("lg-dragging");
      viewport.scrollLeft = drag.left - dx;
      viewport.scrollTop = drag.top - dy;
    });
    window.addEventListener("pointerup", function () {
      drag = null;
      viewport.classList.remove("lg-dragging");
    });
    // A drag that ends on a node is a pan, not a click on its link.
    viewport.addEventListener("click", function (event) {
      if (moved) { event.preventDefault(); event.stopPropagation(); moved = false; }
    }, true);

    var focus = svg.getAttribute("data-focus");
    if (focus) {
      var node = Array.prototype.find.call(svg.querySelectorAll("[data-node]"), function (n) {
        return n.getAttribute("data-node") === focus;
      });
      if (node) {
        var b = node.getBBox();
        viewport.scrollLeft = b.x + b.width / 2 - viewport.clientWidth / 2;
        viewport.scrollTop = b.y + b.height / 2 - viewport.clientHeight / 2;
      }
    }
  }

  Array.prototype.forEach.call(document.querySelectorAll("figure.lg-graphbox"), setUp);
})();
