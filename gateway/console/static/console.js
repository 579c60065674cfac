// warngate duty desk: small vanilla JavaScript, no build step, no library.
// The pages work without it (forms post, tables are filled by the server); it adds the
// map picking and drawing, confirmations, and the live watch page (server-sent events).
"use strict";

function $(sel, root) { return (root || document).querySelector(sel); }
function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }

// -- confirmations -----------------------------------------------------------------
$all("form[data-confirm]").forEach(function (form) {
  form.addEventListener("submit", function (ev) {
    if (!window.confirm(form.dataset.confirm)) { ev.preventDefault(); }
  });
});

// -- screens: as wide as their characters per line ------------------------------------
$all(".screen[data-cols]").forEach(function (el) {
  el.style.minWidth = (Number(el.dataset.cols) * 1.05) + "em";
});

// -- compose: tree, map picking, drawing ----------------------------------------------
var compose = $("#compose");
if (compose) {
  var svg = $("svg.map.pick", compose);
  var unitBox = function (code) { return $('input[name="unit"][value="' + code + '"]', compose); };
  var syncMap = function () {
    if (!svg) { return; }
    $all(".unit", svg).forEach(function (shape) {
      var box = unitBox(shape.dataset.unit);
      shape.classList.toggle("selected", !!(box && box.checked));
    });
  };
  $all("input.branch", compose).forEach(function (branch) {
    var li = branch.closest("li");
    var boxes = $all('input[name="unit"]', li);
    branch.checked = boxes.length > 0 && boxes.every(function (b) { return b.checked; });
    branch.addEventListener("change", function () {
      boxes.forEach(function (b) { b.checked = branch.checked; });
      syncMap();
    });
  });
  $all('input[name="unit"]', compose).forEach(function (b) { b.addEventListener("change", syncMap); });
  $all("select.autosubmit", compose).forEach(function (sel) {
    sel.addEventListener("change", function () { $("#preview-button").click(); });
  });

  var tool = "pick";
  var points = [];
  $all(".map-tools button", compose).forEach(function (button) {
    button.addEventListener("click", function () {
      if (button.dataset.tool === "clear") {
        points = []; compose.elements.polygon.value = ""; compose.elements.circle.value = "";
        draw(); return;
      }
      tool = button.dataset.tool; points = [];
      $all(".map-tools button", compose).forEach(function (b) { b.classList.toggle("on", b === button); });
    });
  });

  var toLatLon = function (ev) {
    var pt = svg.createSVGPoint();
    pt.x = ev.clientX; pt.y = ev.clientY;
    var p = pt.matrixTransform(svg.getScreenCTM().inverse());
    var d = svg.dataset, pad = Number(d.pad), k = Number(d.k);
    var lon = Number(d.lon0) + (p.x - pad) / (Number(d.cos) * k);
    var lat = Number(d.lat1) - (p.y - pad) / k;
    return [Math.round(lat * 1e5) / 1e5, Math.round(lon * 1e5) / 1e5, p.x, p.y];
  };
  var draw = function () {
    var g = $(".drawing", svg);
    while (g.firstChild) { g.removeChild(g.firstChild); }
    var ns = "http://www.w3.org/2000/svg";
    if (points.length && tool === "polygon") {
      var line = document.createElementNS(ns, points.length > 2 ? "polygon" : "polyline");
      line.setAttribute("points", points.map(function (p) { return p[2] + "," + p[3]; }).join(" "));
      g.appendChild(line);
    }
    if (points.length && tool === "circle") {
      var d = svg.dataset, r = Number(compose.elements.radius_km.value || 1) / 111.32 * Number(d.k);
      var c = document.createElementNS(ns, "circle");
      c.setAttribute("cx", points[0][2]); c.setAttribute("cy", points[0][3]); c.setAttribute("r", r);
      g.appendChild(c);
    }
  };
  if (svg) {
    svg.addEventListener("click", function (ev) {
      if (tool === "pick") {
        var shape = ev.target.closest(".unit");
        var box = shape && unitBox(shape.dataset.unit);
        if (box) { box.checked = !box.checked; syncMap(); }
        return;
      }
      var p = toLatLon(ev);
      if (tool === "circle") {
        points = [p];
        compose.elements.circle.value = p[0] + "," + p[1] + " " + (compose.elements.radius_km.value || 1);
      } else {
        points.push(p);
        if (points.length >= 3) {
          var ring = points.concat([points[0]]);
          compose.elements.polygon.value = ring.map(function (q) { return q[0] + "," + q[1]; }).join(" ");
        }
      }
      draw();
    });
  }
  syncMap();
}

// -- watch: the alert's live figures over server-sent events ---------------------------
var watch = $("#watch");
if (watch && window.EventSource) {
  var pct = function (v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%"; };
  var text = function (id, value) { var el = $("#" + id); if (el) { el.textContent = value; } };
  var list = function (id, items, render) {
    var ul = $("#" + id); if (!ul) { return; }
    while (ul.firstChild) { ul.removeChild(ul.firstChild); }
    if (!items.length) { var none = document.createElement("li"); none.className = "hint"; none.textContent = "–"; ul.appendChild(none); }
    items.forEach(function (item) { var li = document.createElement("li"); li.textContent = render(item); ul.appendChild(li); });
  };
  var apply = function (s) {
    text("w-coverage", pct(s.coverage));
    text("w-target", pct(s.target));
    var words = JSON.parse(watch.dataset.words || "{}");
    text("w-verdict", words[s.verdict] || s.verdict || "–");
    if (s.deadline_text) { text("w-deadline", s.deadline_text); }
    text("w-reached", s.target_reached_minutes === null || s.target_reached_minutes === undefined ? "–" : s.target_reached_minutes + " min");
    $all("#w-counts tr[data-channel]").forEach(function (row) {
      var ch = row.dataset.channel, counts = s.counts[ch] || {};
      $all("td[data-k]", row).forEach(function (cell) {
        var k = cell.dataset.k;
        cell.textContent = k === "planned" ? (s.planned_counts[ch] || 0) : (counts[k] || 0);
      });
    });
    var body = $("#w-units tbody");
    s.units.forEach(function (u) {
      var row = $('#w-units tr[data-unit="' + u.unit + '"]');
      if (!row && body) {
        row = document.createElement("tr");
        row.dataset.unit = u.unit;
        var lang = (document.documentElement.lang || "zh").slice(0, 2);
        var name = (u.name && (u.name[lang] || u.name.zh)) || "";
        [(name + " " + u.unit).trim(), u.population, "", pct(u.target)].forEach(function (value, i) {
          var cell = document.createElement("td");
          cell.textContent = value === null || value === undefined ? "–" : value;
          if (i === 2) { cell.dataset.k = "coverage"; }
          row.appendChild(cell);
        });
        body.appendChild(row);
      }
      var cell = row && $('td[data-k="coverage"]', row);
      if (cell) { cell.textContent = pct(u.coverage); }
    });
    $all("svg.map.watch .unit").forEach(function (shape) {
      var fill = s.fill[shape.dataset.unit];
      if (fill) { shape.setAttribute("fill", fill); }
    });
    list("w-escalations", s.escalations, function (e) { return e.unit + ": " + (e.step || e.note || ""); });
    list("w-offline", s.offline, function (e) {
      return e.id + " (" + e.unit + ") — " + (e.offline_s === null ? "never heard from" : Math.round(e.offline_s / 60) + " min");
    });
    list("w-failures", s.render_failures, function (f) { return f.message + ": " + f.error; });
    watch.dataset.updated = s.at;
  };
  var source = new EventSource(watch.dataset.events);
  source.addEventListener("snapshot", function (ev) {
    $("#live-dot").classList.add("on");
    apply(JSON.parse(ev.data));
  });
  source.addEventListener("error", function () { $("#live-dot").classList.remove("on"); });
}
