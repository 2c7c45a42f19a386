// The timeline page's enhancements. The page works without them (forms and links); this adds
// the histogram (drawn from the histogram API, zoomed by a click or a drag), the event drawer,
// stars and comments in place through the events API, and confirmations of bulk actions.
(function () {
  "use strict";
  var root = document.getElementById("timeline");
  if (!root) { return; }
  var project = root.getAttribute("data-project");
  var csrf = root.getAttribute("data-csrf");
  var api = "/api/v1/projects/" + project + "/events";
  var status = document.getElementById("tl-status");

  var say = function (msg) {
    if (status) { status.textContent = msg; }
  };

  var post = function (url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body)
    }).then(function (res) {
      return res.json().catch(function () { return {}; }).then(function (j) {
        if (!res.ok) {
          throw new Error((j.error && j.error.message) || ("The server answered " + res.status + "."));
        }
        return j;
      });
    });
  };

  // ---- URL helpers: every view is a URL, so zooming and filtering navigate.
  var go = function (change) {
    var u = new URL(window.location.href);
    u.searchParams.delete("cursor");
    change(u.searchParams);
    window.location.assign(u.pathname + "?" + u.searchParams.toString());
  };
  var iso = function (ms) { return new Date(ms).toISOString().replace(".000Z", "Z"); };
  var label = function (ms) { return new Date(ms).toISOString().slice(0, 16).replace("T", " "); };

  // ---- Histogram.
  var plot = document.getElementById("histogram-plot");
  var fig = document.getElementById("histogram");
  var svgNS = "http://www.w3.org/2000/svg";
  var hist = null; // {first, step, counts}

  var el = function (name, attrs, parent) {
    var e = document.createElementNS(svgNS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(e); }
    return e;
  };

  var zoom = function (fromMs, toMs) {
    go(function (p) { p.set("from", iso(fromMs)); p.set("to", iso(toMs)); });
  };

  var draw = function () {
    if (!hist || !plot) { return; }
    plot.textContent = "";
    var n = hist.counts.length;
    if (n === 0) {
      var p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No events to chart.";
      plot.appendChild(p);
      return;
    }
    var width = Math.max(200, plot.clientWidth), height = 110, axis = 18;
    var maxCount = Math.max.apply(null, hist.counts) || 1;
    var bw = width / n;
    var svg = el("svg", { width: width, height: height + axis, role: "group", "class": "histogram-svg",
      "aria-label": "Events over time: " + n + " bars of " + hist.stepText + ", at most " + maxCount + " events in one" });
    var sel = el("rect", { x: 0, y: 0, width: 0, height: height, "class": "hist-sel" }, svg);
    hist.counts.forEach(function (c, i) {
      var h = c === 0 ? 0 : Math.max(2, Math.round(c / maxCount * (height - 4)));
      var start = hist.first + i * hist.stepMs;
      var r = el("rect", { x: (i * bw).toFixed(2), y: height - h, width: Math.max(1, bw - 1).toFixed(2), height: h,
        "class": "hist-bar", "data-i": i, tabindex: c > 0 ? 0 : -1, role: "button",
        "aria-label": label(start) + ": " + c + " events. Zoom in." }, svg);
      var t = el("title", {}, r);
      t.textContent = label(start) + " UTC · " + c + " events";
      r.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); zoom(start, start + hist.stepMs); }
      });
    });
    var first = el("text", { x: 0, y: height + 13, "class": "hist-label" }, svg);
    first.textContent = label(hist.first) + " UTC";
    var last = el("text", { x: width, y: height + 13, "class": "hist-label", "text-anchor": "end" }, svg);
    last.textContent = label(hist.first + n * hist.stepMs) + " UTC";
    var peak = el("text", { x: width - 2, y: 10, "class": "hist-label", "text-anchor": "end" }, svg);
    peak.textContent = "max " + maxCount + " / " + hist.stepText;

    // A click zooms into one bar; a drag across bars zooms into their span.
    var down = null;
    var index = function (e) {
      var box = svg.getBoundingClientRect();
      return Math.min(n - 1, Math.max(0, Math.floor((e.clientX - box.left) / bw)));
    };
    svg.addEventListener("pointerdown", function (e) {
      down = index(e);
      svg.setPointerCapture(e.pointerId);
      sel.setAttribute("x", down * bw);
      sel.setAttribute("width", bw);
    });
    svg.addEventListener("pointermove", function (e) {
      if (down === null) { return; }
      var i = index(e), a = Math.min(down, i), b = Math.max(down, i);
      sel.setAttribute("x", a * bw);
      sel.setAttribute("width", (b - a + 1) * bw);
    });
    svg.addEventListener("pointerup", function (e) {
      if (down === null) { return; }
      var i = index(e), a = Math.min(down, i), b = Math.max(down, i);
      down = null;
      zoom(hist.first + a * hist.stepMs, hist.first + (b + 1) * hist.stepMs);
    });
    plot.appendChild(svg);
  };

  if (fig && plot) {
    fetch(fig.getAttribute("data-api"), { credentials: "same-origin" }).then(function (res) {
      return res.json().then(function (j) {
        if (!res.ok) { throw new Error((j.error && j.error.message) || "histogram unavailable"); }
        return j;
      });
    }).then(function (j) {
      var stepMs = Math.round(j.step_seconds * 1000);
      var buckets = j.buckets || [];
      if (buckets.length === 0 || stepMs <= 0) { hist = { first: 0, stepMs: 1, stepText: j.step, counts: [] }; draw(); return; }
      var first = Date.parse(buckets[0].start);
      var lastStart = Date.parse(buckets[buckets.length - 1].start);
      var n = Math.min(5000, Math.round((lastStart - first) / stepMs) + 1);
      var counts = new Array(n).fill(0);
      buckets.forEach(function (b) {
        var i = Math.round((Date.parse(b.start) - first) / stepMs);
        if (i >= 0 && i < n) { counts[i] += b.count; }
      });
      hist = { first: first, stepMs: stepMs, stepText: j.step, counts: counts };
      draw();
    }).catch(function (err) {
      plot.textContent = "The histogram could not be loaded: " + err.message;
    });
    var timer = null;
    window.addEventListener("resize", function () {
      clearTimeout(timer);
      timer = setTimeout(draw, 150);
    });
  }

  // ---- Drawer.
  var drawer = document.getElementById("drawer");
  var body = document.getElementById("drawer-body");
  var opener = null;

  var load = function (href) {
    return fetch(href, { credentials: "same-origin", headers: { "HX-Request": "true" } }).then(function (res) {
      if (!res.ok) { throw new Error("The event could not be loaded (" + res.status + ")."); }
      return res.text();
    }).then(function (html) {
      body.innerHTML = html; // rendered and escaped by the server's templates
      body.setAttribute("data-href", href);
    });
  };

  var openEvent = function (row) {
    if (!drawer || !body) { return; }
    document.querySelectorAll("#events tr.selected").forEach(function (r) { r.classList.remove("selected"); });
    row.classList.add("selected");
    opener = row.querySelector("a.ev-link");
    load(row.getAttribute("data-href")).then(function () {
      drawer.hidden = false;
      body.focus();
    }).catch(function (err) { say(err.message); });
  };

  var closeDrawer = function () {
    if (!drawer || drawer.hidden) { return; }
    drawer.hidden = true;
    document.querySelectorAll("#events tr.selected").forEach(function (r) { r.classList.remove("selected"); });
    if (opener) { opener.focus(); }
  };

  var table = document.getElementById("events");
  if (table) {
    table.addEventListener("click", function (e) {
      var t = e.target;
      if (t.closest("form, button, input, textarea, select")) { return; }
      var a = t.closest("a");
      if (a && !a.classList.contains("ev-link")) { return; }
      if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) { return; } // open in a new tab as usual
      var row = t.closest("tr[data-href]");
      if (!row) { return; }
      e.preventDefault();
      openEvent(row);
    });
  }
  var close = document.getElementById("drawer-close");
  if (close) { close.addEventListener("click", closeDrawer); }
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") { closeDrawer(); }
  });

  // ---- Stars and comments, anywhere on the page (rows and drawer).
  var setStar = function (id, on) {
    document.querySelectorAll('button.star[data-event-id="' + id + '"]').forEach(function (b) {
      b.classList.toggle("on", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
      b.textContent = on ? "\u2605" : "\u2606";
      var field = b.form && b.form.querySelector('input[name="star"]');
      if (field) { field.value = on ? "false" : "true"; }
    });
  };

  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (form.classList.contains("bulk")) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { e.preventDefault(); }
      return;
    }
    if (form.classList.contains("star-form")) {
      e.preventDefault();
      var id = parseInt(form.querySelector('input[name="id"]').value, 10);
      var on = form.querySelector('input[name="star"]').value === "true";
      post(api + "/star", { ids: [id], starred: on }).then(function () {
        setStar(id, on);
        say(on ? "Event " + id + " starred." : "Star removed from event " + id + ".");
      }).catch(function (err) { say(err.message); });
      return;
    }
    // (form.id would be the hidden input named "id": ask for the attribute.)
    if (form.getAttribute("id") === "comment-form" && drawer && !drawer.hidden && drawer.contains(form)) {
      e.preventDefault();
      var eid = parseInt(form.getAttribute("data-event-id"), 10);
      var text = form.querySelector("textarea").value;
      post(api + "/comments", { ids: [eid], text: text }).then(function () {
        say("Comment added to event " + eid + ".");
        return load(body.getAttribute("data-href"));
      }).catch(function (err) { say(err.message); });
    }
  });
})();
