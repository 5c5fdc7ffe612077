// The dcloop review page: plain DOM and canvas, no library, no network but this page's own server.
// Every value from the table goes into the page as text (textContent), never as markup.
(function () {
  "use strict";
  var TYPE_MS = 900;  // letters typed within this long spell one class name
  var R = null;       // the table's rows as columns (api/state)
  var MAP = null;     // the run's map (api/map): ids and x, y
  var S = {list: [], cursor: 0, undo: [], pending: 0, selection: null, typed: "", typedAt: 0, timer: 0,
           picked: [], drag: null, done: {}, syncTimer: 0};

  function byId(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    });
    (children || []).forEach(function (c) { node.append(c); });
    return node;
  }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

  function api(path, body) {
    var options = body === undefined ? {} : {method: "POST", headers: {"Content-Type": "application/json"},
                                             body: JSON.stringify(body)};
    return fetch(path, options).then(function (r) {
      return r.json().then(function (d) { if (!r.ok) throw new Error(d.error || String(r.status)); return d; });
    });
  }

  function say(text, info) {
    var box = byId("message");
    box.textContent = text || "";
    box.className = info ? "info" : "";
    box.hidden = !text;
  }

  // ---- the rows ----

  function kindsIn(cell) {
    return String(cell).split(";").map(function (f) { return f.trim(); }).filter(Boolean)
      .map(function (f) { return f.split(/[:\s(]/)[0]; });
  }
  function isReviewed(n) { var v = R.reviewed[n].trim().toLowerCase(); return v === "ok" || v === "true"; }
  function cells(n) { return {label: R.label[n], split: R.split[n], reviewed: R.reviewed[n]}; }
  function put(n, c, moving) {
    R.label[n] = c.label; R.split[n] = c.split; R.reviewed[n] = c.reviewed;
    if (current() === n && !moving) show();
    drawMap();
  }
  function current() { return S.list.length ? S.list[S.cursor] : undefined; }

  function load() {
    return api("api/state").then(function (d) {
      R = d;
      R.index = {};
      d.id.forEach(function (i, n) { R.index[i] = n; });
      S.undo = []; S.done = {}; S.selection = null;
      byId("title").textContent = "dcloop review: " + d.project + " (" + d.table + ")";
      fillFilters();
      refilter();
      keysLegend();
      counts();
      document.body.setAttribute("data-ready", "1");
      if (!d.has_run) say("No trained run yet: neighbours and the map appear after the first dcloop sync.", true);
      var image = byId("image");
      if (current() === undefined || image.complete) return loadMap();
      // the first image first: on a large table the map's points can wait a moment
      return new Promise(function (done) {
        var go = function () { image.removeEventListener("load", go); image.removeEventListener("error", go); done(loadMap()); };
        image.addEventListener("load", go);
        image.addEventListener("error", go);
      });
    }).catch(function (e) { say("Could not load the table: " + e.message); });
  }

  function options(select, values, labels) {
    var keep = select.value;
    clear(select);
    values.forEach(function (v, k) { select.append(el("option", {value: v, text: labels ? labels[k] : v})); });
    if (values.indexOf(keep) >= 0) select.value = keep;
  }

  function fillFilters() {
    options(byId("f-split"), [""].concat(R.splits), ["all"].concat(R.splits));
    options(byId("f-class"), [""].concat(R.classes), ["all"].concat(R.classes));
    options(byId("f-kind"), [""].concat(R.kinds), ["all"].concat(R.kinds));
    options(byId("f-reviewed"), ["", "no", "yes"], ["all", "not reviewed", "reviewed"]);
    options(byId("picked-class"), R.classes);
  }

  function matches(n) {
    var split = byId("f-split").value, label = byId("f-class").value, kind = byId("f-kind").value,
        reviewed = byId("f-reviewed").value;
    return (!split || R.split[n].trim().toLowerCase() === split) && (!label || R.label[n].trim() === label) &&
      (!kind || kindsIn(R.flags[n]).indexOf(kind) >= 0) &&
      (!reviewed || (reviewed === "yes") === isReviewed(n));
  }

  function refilter() {
    S.list = (S.selection || R.queue).filter(matches);
    S.cursor = 0;
    byId("selection").hidden = !S.selection;
    if (S.selection) byId("selection-text").textContent = "Reviewing " + S.selection.length + " selected row(s).";
    show();
  }

  // ---- one row ----

  function show() {
    var n = current();
    byId("position").textContent = S.list.length ? (S.cursor + 1) + " / " + S.list.length : "no rows match";
    document.body.setAttribute("data-current", n === undefined ? "" : R.id[n]);
    if (n === undefined) {
      byId("image").removeAttribute("src");
      ["row-id", "row-label", "row-model", "row-split", "row-reviewed", "row-susp", "row-state"].forEach(function (id) {
        byId(id).textContent = "";
      });
      clear(byId("row-flags")); clear(byId("neighbours")); clear(byId("duplicates"));
      drawMap();
      return;
    }
    var id = R.id[n];
    byId("image").src = "img/" + encodeURIComponent(id) + "/large";
    byId("image").alt = "image of row " + id;
    byId("row-id").textContent = id;
    byId("row-label").textContent = R.label[n] || "(blank)";
    byId("row-model").textContent = R.model[n] ? R.model[n] + (R.conf[n] ? " (" + R.conf[n] + ")" : "") : "–";
    byId("row-split").textContent = R.split[n] || "(blank)";
    byId("row-reviewed").textContent = R.reviewed[n] || "no";
    byId("row-susp").textContent = R.susp[n] || "–";
    byId("row-state").textContent = S.done[id] || "";
    var flags = clear(byId("row-flags"));
    R.flags[n].split(";").map(function (f) { return f.trim(); }).filter(Boolean).forEach(function (f) {
      flags.append(el("li", {text: f}));
    });
    clear(byId("neighbours")); clear(byId("duplicates"));
    api("api/item/" + encodeURIComponent(id)).then(function (d) {
      if (R.id[current()] !== id) return;
      d.neighbours.forEach(function (r) { byId("neighbours").append(thumb(r.id, r.label + " · " + r.sim.toFixed(2))); });
      d.duplicates.forEach(function (r) { byId("duplicates").append(thumb(r.id, r.label)); });
    }).catch(function () {});
    drawMap();
  }

  function thumb(id, caption) {
    return el("figure", {title: id, "data-id": id, onclick: function () { jump(id); }}, [
      el("img", {src: "img/" + encodeURIComponent(id) + "/small", alt: id}), el("figcaption", {text: caption})]);
  }

  function jump(id) {
    var n = R.index[id];
    if (n === undefined) return;
    var at = S.list.indexOf(n);
    if (at < 0) { S.list.splice(S.cursor + 1, 0, n); at = S.cursor + 1; }
    S.cursor = at;
    show();
  }

  function move(step) {
    if (!S.list.length) return;
    S.cursor = Math.max(0, Math.min(S.list.length - 1, S.cursor + step));
    show();
  }

  // ---- decisions ----

  function describe(c) {
    if (c.label !== undefined) return "labeled " + c.label;
    if (c.split === "exclude") return "excluded";
    if (c.reviewed === "ok") return "kept (reviewed = ok)";
    return "";
  }

  function decide(changes) {
    var n = current();
    if (n === undefined) return;
    var before = cells(n), after = Object.assign({}, before, changes);
    var entry = {items: [{n: n, before: before, after: after}]};
    S.undo.push(entry);
    S.done[R.id[n]] = describe(changes);
    send(entry.items, entry, true);  // the page moves on: the row is not shown again first
    move(1);
  }

  function undo() {
    var entry = S.undo.pop();
    if (!entry) { say("Nothing to undo.", true); return; }
    var back = entry.items.map(function (it) { return {n: it.n, before: it.after, after: it.before}; });
    back.forEach(function (it) { delete S.done[R.id[it.n]]; });
    send(back, null);
    var at = S.list.indexOf(entry.items[0].n);
    if (at >= 0) { S.cursor = at; show(); }
    say("Undone: " + entry.items.length + " row(s) back as they were.", true);
  }

  function send(items, entry, moving) {
    items.forEach(function (it) { put(it.n, it.after, moving); });
    pending(1);
    var body = {decisions: items.map(function (it) {
      return {id: R.id[it.n], label: it.after.label, split: it.after.split, reviewed: it.after.reviewed};
    })};
    api("api/decide", body).then(function (d) {
      var refused = [];
      d.results.forEach(function (r, k) {
        if (r.ok) return;
        put(items[k].n, items[k].before);
        delete S.done[r.id];
        refused.push(r.message);
      });
      if (refused.length) {
        if (entry) S.undo.splice(S.undo.indexOf(entry), 1);
        say(refused.join("\n"));
      }
      R.changed = d.changed;
    }).catch(function (e) {
      items.forEach(function (it) { put(it.n, it.before); });
      if (entry) S.undo.splice(S.undo.indexOf(entry), 1);
      say("Not written: " + e.message);
    }).then(function () { pending(-1); });
  }

  function pending(step) {
    S.pending += step;
    document.body.setAttribute("data-pending", String(S.pending));
    counts();
  }

  function counts() {
    byId("counts").textContent = R.changed + " row(s) changed in " + R.table + " this session" +
      (S.pending ? " · writing…" : "");
    document.body.setAttribute("data-changed", String(R.changed));
    byId("sync").textContent = "Sync now (" + R.changed + " row(s) changed)";
  }

  // ---- keys ----

  // Digits pick classes by position (1 the first, 0 the tenth) unless class names start with digits.
  function byPosition() { return !R.classes.some(function (c) { return /^[0-9]/.test(c); }); }

  function typeKey(typed, now) {
    var t = typed.toLowerCase();
    var starts = R.classes.filter(function (c) { return c.toLowerCase().indexOf(t) === 0; });
    var exact = R.classes.filter(function (c) { return c.toLowerCase() === t; });
    clearTimeout(S.timer);
    S.typed = "";
    if (starts.length === 1) return decide({label: starts[0]});
    if (!starts.length) {
      var k = /^[0-9]$/.test(typed) && byPosition() ? (typed === "0" ? 9 : Number(typed) - 1) : -1;
      if (k >= 0 && k < R.classes.length) return decide({label: R.classes[k]});
      return say("No class starts with " + JSON.stringify(typed) + ".", true);
    }
    S.typed = typed; S.typedAt = now;  // several classes start so: wait for the next letter
    S.timer = setTimeout(function () { S.typed = ""; if (exact.length) decide({label: exact[0]}); }, TYPE_MS);
  }

  function onKey(e) {
    var tag = e.target.tagName;
    if (!R || tag === "SELECT" || tag === "INPUT" || tag === "BUTTON" || e.ctrlKey || e.metaKey || e.altKey) return;
    if (!byId("confirm").hidden) return;
    var k = e.key, now = Date.now(), typing = S.typed && now - S.typedAt < TYPE_MS;
    if (k === "ArrowRight" || k === "ArrowDown") move(1);
    else if (k === "ArrowLeft" || k === "ArrowUp") move(-1);
    else if (k === "Enter") accept();
    else if (k.length !== 1 || k === " ") return;
    else if (!typing && k === "k") decide({reviewed: "ok"});
    else if (!typing && k === "x") decide({split: "exclude"});
    else if (!typing && k === "u") undo();
    else typeKey((typing ? S.typed : "") + k, now);
    e.preventDefault();
  }

  function accept() {
    var n = current();
    if (n === undefined) return;
    if (R.classes.indexOf(R.model[n]) < 0) return say("The model has no class for row " + R.id[n] + ".", true);
    decide({label: R.model[n]});
  }

  function keysLegend() {
    var keys = clear(byId("keys"));
    var add = function (k, what) { keys.append(el("dt", {text: k}), el("dd", {text: what})); };
    var starts = function (p) { return R.classes.filter(function (c) { return c.toLowerCase().indexOf(p) === 0; }); };
    R.classes.forEach(function (c, n) {
      var keys = [], typed = c;
      for (var k = 1; k <= c.length; k++) {  // the shortest start that names this class alone
        if (starts(c.slice(0, k).toLowerCase()).length === 1) { typed = c.slice(0, k); break; }
      }
      if (n < 10 && byPosition()) keys.push(String((n + 1) % 10));
      if (/^[0-9]/.test(c) || !/^[kxu]/i.test(c)) keys.push(typed);
      add(keys.join(" or "), "label " + c);
    });
    add("Enter", "accept the model's class");
    add("k", "keep the label (reviewed = ok)");
    add("x", "exclude the row (split = exclude)");
    add("u", "undo the last decision");
    add("← →", "previous, next");
  }

  // ---- the embedding map: box or lasso selection ----

  function loadMap() {
    return api("api/map").then(function (d) {
      MAP = d;
      MAP.row = d.id.map(function (i) { return R.index[i]; });
      var x = d.x, y = d.y;
      MAP.box = {x0: Math.min.apply(null, x), x1: Math.max.apply(null, x), y0: Math.min.apply(null, y),
                 y1: Math.max.apply(null, y)};
      byId("map-hint").textContent = d.axes.method ? "(" + d.axes.method + "; drag to select)" : "";
      drawMap();
      document.body.setAttribute("data-map", "1");
    }).catch(function (e) { byId("map-hint").textContent = "(no map: " + e.message + ")"; });
  }

  function pixel(k) {
    var c = byId("map"), m = 12, b = MAP.box;
    var w = (b.x1 - b.x0) || 1, h = (b.y1 - b.y0) || 1;
    return [m + (MAP.x[k] - b.x0) / w * (c.width - 2 * m), c.height - m - (MAP.y[k] - b.y0) / h * (c.height - 2 * m)];
  }

  function color(n) {
    var k = n === undefined ? -1 : R.classes.indexOf(R.label[n].trim());
    return k < 0 ? "#b8b8b8" : "hsl(" + Math.round((k * 137.508) % 360) + ",60%,45%)";
  }

  function drawMap() {  // at most once a frame, however many decisions come in
    if (MAP) {
      byId("map").setAttribute("data-points", String(MAP.x.length));
      byId("map").setAttribute("data-picked", String(S.picked.length));
    }
    if (!S.drawing) S.drawing = requestAnimationFrame(function () { S.drawing = 0; paintMap(); });
  }

  function paintMap() {
    var c = byId("map"), g = c.getContext("2d");
    g.clearRect(0, 0, c.width, c.height);
    if (!MAP || !R) return;
    var picked = {}, now = current();
    S.picked.forEach(function (n) { picked[n] = true; });
    MAP.x.forEach(function (_, k) {
      var p = pixel(k), n = MAP.row[k];
      g.fillStyle = color(n);
      g.globalAlpha = picked[n] || !S.picked.length ? 0.9 : 0.35;
      g.fillRect(p[0] - 2, p[1] - 2, 4, 4);
      if (n === now) { g.globalAlpha = 1; g.strokeStyle = "#000"; g.lineWidth = 2; g.strokeRect(p[0] - 6, p[1] - 6, 12, 12); }
    });
    g.globalAlpha = 1;
    if (S.drag && S.drag.points.length > 1) {
      var pts = S.drag.points, a = pts[0], z = pts[pts.length - 1];
      g.strokeStyle = "#333"; g.lineWidth = 1; g.setLineDash([4, 3]);
      if (S.drag.mode === "box") g.strokeRect(a[0], a[1], z[0] - a[0], z[1] - a[1]);
      else { g.beginPath(); g.moveTo(a[0], a[1]); pts.forEach(function (p) { g.lineTo(p[0], p[1]); }); g.closePath(); g.stroke(); }
      g.setLineDash([]);
    }
  }

  function inside(p, poly) {  // even-odd rule
    var hit = false;
    for (var i = 0, j = poly.length - 1; i < poly.length; j = i++) {
      var a = poly[i], b = poly[j];
      if ((a[1] > p[1]) !== (b[1] > p[1]) && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0]) hit = !hit;
    }
    return hit;
  }

  function finishDrag() {
    var d = S.drag, pts = d.points, a = pts[0], z = pts[pts.length - 1];
    S.drag = null;
    var poly = d.mode === "box" ? [a, [z[0], a[1]], z, [a[0], z[1]]] : pts;
    if (pts.length < 2 || (d.mode === "lasso" && pts.length < 3)) { S.picked = []; drawMap(); return; }
    var rank = {};
    R.queue.forEach(function (n, k) { rank[n] = k; });
    S.picked = MAP.x.map(function (_, k) { return k; })
      .filter(function (k) { return MAP.row[k] !== undefined && inside(pixel(k), poly); })
      .map(function (k) { return MAP.row[k]; })
      .sort(function (m, n) { return (m in rank ? rank[m] : 1e9 + m) - (n in rank ? rank[n] : 1e9 + n); });
    byId("picked").hidden = !S.picked.length;
    byId("confirm").hidden = true;
    byId("picked-text").textContent = S.picked.length + " row(s) selected.";
    drawMap();
  }

  function mapEvents() {
    var c = byId("map");
    c.addEventListener("mousedown", function (e) {
      if (!MAP) return;
      S.drag = {mode: byId("map-mode").value, points: [[e.offsetX, e.offsetY]]};
      e.preventDefault();
    });
    c.addEventListener("mousemove", function (e) {
      if (!S.drag) return;
      S.drag.points.push([e.offsetX, e.offsetY]);
      drawMap();
    });
    c.addEventListener("mouseup", function (e) {
      if (!S.drag) return;
      S.drag.points.push([e.offsetX, e.offsetY]);
      finishDrag();
    });
    byId("picked-queue").addEventListener("click", function () {
      S.selection = S.picked.slice();
      refilter();
      this.blur();
    });
    byId("picked-relabel").addEventListener("click", function () {
      var to = byId("picked-class").value, list = clear(byId("confirm-list"));
      var rows = S.picked.filter(function (n) { return R.label[n] !== to; });
      byId("confirm-text").textContent = rows.length ? "Relabel these " + rows.length + " row(s) as " + to + "?" :
        "All selected rows are labeled " + to + " already.";
      rows.forEach(function (n) {
        list.append(el("li", {"data-id": R.id[n], text: R.id[n] + ": " + (R.label[n] || "(blank)") + " → " + to}));
      });
      byId("confirm-yes").hidden = !rows.length;
      byId("confirm").hidden = false;
      S.confirm = {rows: rows, to: to};
    });
    byId("confirm-yes").addEventListener("click", function () {
      var c = S.confirm, entry = {items: c.rows.map(function (n) {
        var before = cells(n);
        return {n: n, before: before, after: Object.assign({}, before, {label: c.to})};
      })};
      c.rows.forEach(function (n) { S.done[R.id[n]] = "labeled " + c.to; });
      S.undo.push(entry);
      send(entry.items, entry);
      byId("confirm").hidden = true;
      this.blur();
    });
    byId("confirm-no").addEventListener("click", function () { byId("confirm").hidden = true; this.blur(); });
  }

  // ---- a sync from the page ----

  function startSync() {
    byId("sync").blur();
    byId("sync").disabled = true;
    api("api/sync", {}).then(followSync).catch(function (e) { byId("sync").disabled = false; say("Sync: " + e.message); });
  }

  function followSync(d) {
    var box = byId("sync-status");
    document.body.setAttribute("data-sync", d.state);
    if (d.state === "running") {
      box.textContent = "syncing: " + (d.lines.length ? d.lines[d.lines.length - 1] : "starting");
      clearTimeout(S.syncTimer);
      S.syncTimer = setTimeout(function () { api("api/sync").then(followSync); }, 1000);
      return;
    }
    byId("sync").disabled = false;
    if (d.state === "done") {
      var scores = Object.keys(d.scores || {}).map(function (s) { return s + " " + d.scores[s].score.toFixed(3); });
      box.textContent = "sync done: " + d.message + (scores.length ? " Score: " + scores.join(", ") + "." : "");
      load();
    } else if (d.state === "failed") {
      box.textContent = "sync failed: " + (d.lines.length ? d.lines[d.lines.length - 1] : "exit " + d.rc);
    }
  }

  function start() {
    document.addEventListener("keydown", onKey);
    ["f-split", "f-class", "f-kind", "f-reviewed"].forEach(function (id) {
      byId(id).addEventListener("change", function () { refilter(); this.blur(); });
    });
    byId("selection-clear").addEventListener("click", function () { S.selection = null; refilter(); this.blur(); });
    byId("sync").addEventListener("click", startSync);
    mapEvents();
    load();
  }

  start();
}());
