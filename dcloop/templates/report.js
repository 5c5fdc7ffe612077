// The dcloop report page: plain DOM, SVG and canvas, no library, no network.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var P = D.points, C = D.classes, SPLITS = D.splits, N = P.id.length;
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
                 "#bcbd22", "#393b79", "#637939", "#ad494a"];
  var SPLIT_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#9c9c9c"];
  var UNLABELED = "#b8b8b8";

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

  var SVGNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%"; }
  function num(v) { return Number(v).toLocaleString("en-US"); }
  function classColor(k) {
    return k < PALETTE.length ? PALETTE[k] : "hsl(" + Math.round((k * 137.508) % 360) + ",60%,45%)";
  }
  function labelName(i) {
    if (P.label[i] >= 0) return C[P.label[i]];
    return P.raw_label[i] ? P.raw_label[i] + " (not a class)" : "unlabeled";
  }

  function thumb(k, alt) {
    if (k === undefined || k === null || k < 0) return el("div", {class: "thumb-missing", text: "no image"});
    return el("img", {src: "data:image/png;base64," + D.thumbs[k], alt: alt || ""});
  }

  // Flags other than the model's own doubt, which the tile already shows.
  function otherFlags(i) {
    return P.flags[i].split(";").map(function (f) { return f.trim(); })
      .filter(function (f) { return f && f.slice(0, 6) !== "label?"; }).join("; ");
  }

  // A gallery tile for one point of the run: the image, its label, the model's view, its flags.
  function tile(i) {
    var conf = P.conf[i] === null ? "" : " · " + P.conf[i].toFixed(2), flags = otherFlags(i);
    var lines = [
      el("div", {}, [el("b", {text: "label " + labelName(i)})]),
      el("div", {class: P.pred[i] === P.label[i] ? "" : "flag", text: "model " + C[P.pred[i]] + conf}),
      el("div", {class: "muted", text: (SPLITS[P.split[i]] || "?") +
        (P.susp[i] === null ? "" : " · susp. " + P.susp[i].toFixed(2))}),
      el("div", {class: "id", text: P.id[i]})
    ];
    if (flags) lines.push(el("div", {class: "flag", text: flags}));
    return el("figure", {class: "tile" + (P.suspect[i] ? " suspect" : ""), title: P.flags[i] || P.id[i]},
              [thumb(P.thumb[i], labelName(i)), el("figcaption", {}, lines)]);
  }

  function gallery(indices) { return el("div", {class: "gallery"}, indices.map(tile)); }

  function card(key, value, sub, subClass) {
    return el("div", {class: "card"}, [el("div", {class: "k", text: key}), el("div", {class: "v", text: value}),
                                       el("div", {class: "s " + (subClass || ""), text: sub})]);
  }

  function change(delta) {
    if (delta === null || delta === undefined) return ["first training under this model", ""];
    var points = (100 * Math.abs(delta)).toFixed(1);
    if (Math.abs(delta) < 0.0005) return ["unchanged since the previous training", ""];
    return [(delta > 0 ? "▲ +" : "▼ −") + points + " points since the previous training", delta > 0 ? "up" : "down"];
  }

  function summary() {
    var s = D.summary, box = byId("summary-cards");
    byId("title").textContent = "dcloop report · " + s.project;
    var splits = SPLITS.map(function (k) { return num(s.splits[k]) + " " + k; }).join(" · ");
    var val = change(s.val_change), test = change(s.test_change);
    var flags = s.flags.length ? s.flags.map(function (f) { return f.kind + " " + num(f.rows); }).join(" · ") : "no flags";
    box.append(
      card("label version", s.version || "–", "run " + s.run_id + (s.time ? ", trained " + s.time : "")),
      card("rows", num(s.rows), splits + (s.unlabeled ? " · " + num(s.unlabeled) + " unlabeled" : "")),
      card("val accuracy", pct(s.val), val[0], val[1]),
      card("test accuracy", pct(s.test), test[0], test[1]),
      card("labels changed", s.labels_changed === "" ? "–" : num(s.labels_changed),
           D.scores.length && D.scores[0].run_id === s.run_id ? "first training: every row counts as new"
                                                               : "rows changed since the previous training"),
      card("suspects (label? flags)", num(s.suspects), "rows the table flags label?: the model prefers another " +
           "class; the review queue below lists them with the other flags"),
      card("flagged rows", num(s.flagged), flags),
      card("model", s.model.preset, "fingerprint " + s.model.fingerprint + (s.model.best_epoch ?
        " · best epoch " + s.model.best_epoch + " of " + s.model.epochs : "") +
        (s.model.duration_s ? " · " + s.model.duration_s + " s" : ""))
    );
  }

  // The rows the table lists first, as the sync sorts it: what to open in the sheet.
  function reviewQueue() {
    var q = D.queue, box = byId("queue-grid");
    byId("queue-hint").textContent = q.total ? "The first " + q.rows.length + " of the " + num(q.total) +
      " rows with a flag or some suspicion, across splits, in the table's own order (rows without a usable " +
      "image first, then most suspicious first; reviewed rows are left out). Each shows its id, label, " +
      "the model's class and the reasons; find the id in the sheet to fix the label, exclude the row or " +
      "mark it reviewed." : "";
    if (!q.rows.length) { box.append(el("p", {class: "muted", text: "Nothing to review: no row has a flag or any suspicion."})); return; }
    q.rows.forEach(function (r, n) {
      var model = r.model ? "model " + r.model : "model –";
      box.append(el("figure", {class: "qtile", "data-id": r.id, title: r.flags || r.id}, [
        el("div", {class: "rank", text: "#" + (n + 1) + " · " + r.split +
          (r.suspicion === null ? "" : " · susp. " + r.suspicion.toFixed(2))}),
        thumb(r.thumb, r.id),
        el("figcaption", {}, [
          el("div", {class: "id", text: r.id}),
          el("div", {}, [el("b", {text: "label " + (r.label || "∅")})]),
          el("div", {class: r.model && r.model !== r.label ? "flag" : "", text: model}),
          el("div", {class: "reasons", text: r.flags || "no flag: suspicion only"})])]));
    });
  }

  function scoreChart() {
    var pts = D.scores, box = byId("score-chart");
    if (!pts.length) { box.append(el("p", {class: "muted", text: "No training recorded under this model yet."})); return; }
    var W = Math.max(640, box.clientWidth || 1200), H = 320, m = {l: 70, r: 140, t: 30, b: 70};
    var pw = W - m.l - m.r, ph = H - m.t - m.b;
    var values = [];
    pts.forEach(function (p) { if (p.val !== null) values.push(p.val); if (p.test !== null) values.push(p.test); });
    var lo = values.length ? Math.max(0, Math.floor((Math.min.apply(null, values) - 0.02) * 20) / 20) : 0, hi = 1;
    var step = hi - lo <= 0.3 ? 0.05 : 0.1;
    function x(i) { return m.l + (i + 0.5) * pw / pts.length; }
    function y(v) { return m.t + (hi - v) / (hi - lo) * ph; }
    var chart = svg("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img",
                            "aria-label": "accuracy over label versions"});
    for (var v = lo; v <= hi + 1e-9; v += step) {
      chart.append(svg("line", {x1: m.l, x2: m.l + pw, y1: y(v), y2: y(v), stroke: "#e4e7eb"}));
      chart.append(svg("text", {x: m.l - 8, y: y(v) + 4, "text-anchor": "end", "font-size": 12, fill: "#616e7c"},
                       Math.round(v * 100) + "%"));
    }
    chart.append(svg("line", {x1: m.l, x2: m.l + pw, y1: m.t + ph, y2: m.t + ph, stroke: "#9aa5b1"}));
    chart.append(svg("line", {x1: m.l, x2: m.l, y1: m.t, y2: m.t + ph, stroke: "#9aa5b1"}));
    var every = Math.max(1, Math.ceil(pts.length / Math.max(1, pw / 80)));
    pts.forEach(function (p, i) {
      if (i % every && i !== pts.length - 1) return;
      chart.append(svg("text", {x: x(i), y: m.t + ph + 18, "text-anchor": "middle", "font-size": 12}, "#" + (i + 1)));
      chart.append(svg("text", {x: x(i), y: m.t + ph + 33, "text-anchor": "middle", "font-size": 11, fill: "#616e7c"},
                       String(p.version).slice(0, 8)));
    });
    chart.append(svg("text", {x: m.l + pw / 2, y: H - 10, "text-anchor": "middle", "font-size": 13},
                     "training (label version)"));
    chart.append(svg("text", {x: 16, y: m.t + ph / 2, "text-anchor": "middle", "font-size": 13,
                              transform: "rotate(-90 16 " + (m.t + ph / 2) + ")"}, "accuracy"));
    // val a circle left of the tick, test a square right of it: equal scores stay two visible marks.
    function marker(shape, cx, cy, color) {
      return shape === "circle" ? svg("circle", {cx: cx, cy: cy, r: 4.5, fill: color, stroke: "#fff"})
        : svg("rect", {x: cx - 4.5, y: cy - 4.5, width: 9, height: 9, fill: color, stroke: "#fff"});
    }
    [["val", "#2563eb", "val accuracy", "circle", -4], ["test", "#f28e2b", "test accuracy", "square", 4]].forEach(function (serie, n) {
      var key = serie[0], color = serie[1], shape = serie[3], dx = serie[4], path = [];
      pts.forEach(function (p, i) { if (p[key] !== null) path.push((x(i) + dx) + "," + y(p[key])); });
      if (path.length > 1) chart.append(svg("polyline", {points: path.join(" "), fill: "none", stroke: color, "stroke-width": 2}));
      pts.forEach(function (p, i) {
        if (p[key] === null) return;
        var dot = marker(shape, x(i) + dx, y(p[key]), color);
        dot.append(svg("title", {}, serie[2] + " " + pct(p[key]) + " · run " + p.run_id + " · version " + p.version));
        chart.append(dot);
      });
      chart.append(marker(shape, m.l + pw + 24, m.t + 10 + n * 22, color));
      chart.append(svg("text", {x: m.l + pw + 36, y: m.t + 14 + n * 22, "font-size": 12}, serie[2]));
    });
    pts.forEach(function (p, i) {
      var top = Math.max(p.val === null ? lo : p.val, p.test === null ? lo : p.test);
      var text = i === 0 ? "first" : "+" + num(p.changed) + " changed";
      chart.append(svg("text", {x: x(i), y: y(top) - 10, "text-anchor": "middle", "font-size": 11, fill: "#334e68"}, text));
    });
    box.append(chart);
  }

  var openCell = null;
  function matrix(split, title, note) {
    var M = D.confusion[split], wrap = el("div", {class: "matrix", "data-split": split});
    wrap.append(el("h3", {text: title + " · " + num(M.rows) + " labeled rows · accuracy " + pct(M.accuracy)}));
    if (note) wrap.append(note);
    if (!M.rows) { wrap.append(el("p", {class: "muted", text: "No labeled rows in this split."})); return wrap; }
    var table = el("table", {class: "cm"}), shown = byId("confusion-gallery"), nonEmpty = 0;
    table.append(el("tr", {}, [el("th"), el("th"), el("th", {class: "axis", colspan: C.length, text: "predicted →"})]));
    table.append(el("tr", {}, [el("th"), el("th", {class: "axis", text: "label ↓"})].concat(
      C.map(function (c) { return el("th", {text: c}); }))));
    M.matrix.forEach(function (row, a) {
      var total = row.reduce(function (s, v) { return s + v; }, 0);
      var tr = el("tr", {}, [el("th"), el("th", {class: "rowname", text: C[a]})]);
      row.forEach(function (count, b) {
        var share = total ? count / total : 0, alpha = a === b ? 0.1 + 0.8 * share : Math.min(1, 0.18 + 2.5 * share);
        var cell = el("td", {class: "cell", text: count ? String(count) : ""});
        if (count) {
          nonEmpty += 1;
          cell.style.background = (a === b ? "rgba(37,99,235," : "rgba(198,40,40,") + alpha.toFixed(2) + ")";
          if (alpha > 0.55) cell.style.color = "#fff";
        } else cell.style.background = "#f5f7fa";
        cell.title = "label " + C[a] + ", model says " + C[b] + ": " + count + " of " + total;
        if (count && a !== b) {
          cell.classList.add("click");
          cell.addEventListener("click", function () {
            shown.replaceChildren();
            var again = openCell === cell;
            if (openCell) openCell.classList.remove("open");
            openCell = again ? null : cell;
            if (again) return;
            cell.classList.add("open");
            var members = M.cells[a + "," + b] || [];
            var more = count > members.length ? " (first " + members.length + " shown)" : "";
            shown.append(el("h3", {text: split + ": label " + C[a] + ", model says " + C[b] + ": " + count +
                                         " image(s)" + more}), gallery(members));
          });
        }
        tr.append(cell);
      });
      table.append(tr);
    });
    wrap.setAttribute("data-cells", String(nonEmpty));
    wrap.append(el("div", {style: "overflow-x:auto"}, [table]));
    return wrap;
  }

  function confusionMatrices() {
    var box = byId("confusion-grid");
    var T = D.train_scoring;
    box.append(matrix("val", "val"), matrix("test", "test"),
               matrix("train", T.title, el("p", {class: T.honest ? "note" : "note warn", id: "train-note", text: T.note})));
  }

  function niceTicks(lo, hi, count) {
    var raw = (hi - lo || 1) / count, mag = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / mag;
    var step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag, out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(v);
    return out;
  }

  function embeddingMap() {
    var canvas = byId("map-canvas"), tip = byId("map-tip"), legend = byId("map-legend");
    var state = {by: "label", splits: SPLITS.map(function () { return true; }), suspectsOnly: false, hidden: {}, pinned: -1};
    var screenX = new Float32Array(N), screenY = new Float32Array(N), visible = [];
    var method = D.map.method === "PCA" ? "PCA, a linear view (" + (D.map.why || "UMAP not available") + "; UMAP " +
      "separates classes better)" : "UMAP (seeded: the same run gives the same map; distances between " +
      "islands mean little, closeness within one does)";
    byId("map-hint").textContent = method + " of the fixed model's penultimate-layer embeddings, one dot per " +
      "image (" + num(N) + "). Dots with a black ring are suspects. Hover a dot to see the image, click to pin it; " +
      "click a legend entry to hide it. Look for islands of one colour inside another class, and sparse regions.";
    var controls = byId("map-controls"), select = el("select", {});
    ["label", "prediction", "split"].forEach(function (k) { select.append(el("option", {value: k, text: k})); });
    select.addEventListener("change", function () { state.by = select.value; state.hidden = {}; draw(); });
    controls.append(el("label", {}, ["colour by ", select]));
    SPLITS.forEach(function (name, k) {
      var count = P.split.filter(function (s) { return s === k; }).length;
      if (!count) return;
      var box = el("input", {type: "checkbox", checked: ""});
      box.addEventListener("change", function () { state.splits[k] = box.checked; draw(); });
      controls.append(el("label", {}, [box, " " + name + " (" + num(count) + ")"]));
    });
    var only = el("input", {type: "checkbox"});
    only.addEventListener("change", function () { state.suspectsOnly = only.checked; draw(); });
    controls.append(el("label", {}, [only, " suspects only (" + num(P.suspect.reduce(function (a, b) { return a + b; }, 0)) + ")"]));

    function key(i) {
      if (state.by === "split") return "s" + P.split[i];
      var k = state.by === "label" ? P.label[i] : P.pred[i];
      return k >= 0 ? String(k) : "u";
    }
    function color(k) {
      if (k === "u") return UNLABELED;
      if (k.charAt(0) === "s") return SPLIT_COLORS[+k.slice(1)] || UNLABELED;
      return classColor(+k);
    }
    function keyName(k) {
      if (k === "u") return "unlabeled / not a class";
      if (k.charAt(0) === "s") return SPLITS[+k.slice(1)];
      return C[+k];
    }
    var xs = P.x.filter(function (v) { return v !== null; }), ys = P.y.filter(function (v) { return v !== null; });
    var x0 = Math.min.apply(null, xs), x1 = Math.max.apply(null, xs), y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    var px = (x1 - x0) * 0.03 || 1, py = (y1 - y0) * 0.03 || 1;
    x0 -= px; x1 += px; y0 -= py; y1 += py;
    var m = {l: 64, r: 16, t: 14, b: 52};

    function draw() {
      var W = canvas.clientWidth || 1200, H = canvas.clientHeight || 640, dpr = window.devicePixelRatio || 1;
      canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
      var g = canvas.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, W, H);
      var pw = W - m.l - m.r, ph = H - m.t - m.b;
      function sx(v) { return m.l + (v - x0) / (x1 - x0) * pw; }
      function sy(v) { return m.t + (y1 - v) / (y1 - y0) * ph; }
      g.strokeStyle = "#9aa5b1"; g.strokeRect(m.l, m.t, pw, ph);
      g.fillStyle = "#616e7c"; g.font = "11px system-ui, sans-serif";
      g.textAlign = "center";
      niceTicks(x0, x1, 6).forEach(function (v) {
        g.fillRect(sx(v), m.t + ph, 1, 5); g.fillText(+v.toPrecision(3), sx(v), m.t + ph + 17);
      });
      g.textAlign = "right";
      niceTicks(y0, y1, 6).forEach(function (v) {
        g.fillRect(m.l - 5, sy(v), 5, 1); g.fillText(+v.toPrecision(3), m.l - 8, sy(v) + 4);
      });
      g.fillStyle = "#1f2933"; g.font = "13px system-ui, sans-serif"; g.textAlign = "center";
      g.fillText(D.map.x, m.l + pw / 2, H - 12);
      g.save(); g.translate(16, m.t + ph / 2); g.rotate(-Math.PI / 2); g.fillText(D.map.y, 0, 0); g.restore();
      var r = N > 5000 ? 2.6 : N > 1500 ? 3.6 : 4.6, counts = {};
      visible = [];
      for (var i = 0; i < N; i++) {
        var k = key(i);
        counts[k] = (counts[k] || 0) + 1;
        if (P.x[i] === null || !state.splits[P.split[i]] || state.hidden[k] || (state.suspectsOnly && !P.suspect[i])) continue;
        screenX[i] = sx(P.x[i]); screenY[i] = sy(P.y[i]);
        visible.push(i);
      }
      g.globalAlpha = 0.75;
      visible.forEach(function (i) {
        if (P.suspect[i]) return;
        g.fillStyle = color(key(i)); g.beginPath(); g.arc(screenX[i], screenY[i], r, 0, 2 * Math.PI); g.fill();
      });
      g.globalAlpha = 1; g.lineWidth = 1.6; g.strokeStyle = "#111";
      visible.forEach(function (i) {
        if (!P.suspect[i]) return;
        g.fillStyle = color(key(i)); g.beginPath(); g.arc(screenX[i], screenY[i], r + 1.5, 0, 2 * Math.PI); g.fill(); g.stroke();
      });
      canvas.setAttribute("data-points", String(visible.length));
      drawLegend(counts);
    }

    function drawLegend(counts) {
      legend.replaceChildren();
      Object.keys(counts).sort(function (a, b) {
        var ua = a === "u", ub = b === "u";
        if (ua !== ub) return ua ? 1 : -1;
        return (+a.replace("s", "")) - (+b.replace("s", ""));
      }).forEach(function (k) {
        var entry = el("span", {class: state.hidden[k] ? "off" : "", title: "click to hide or show"},
                       [el("span", {class: "swatch", style: "background:" + color(k)}), keyName(k) + " (" + num(counts[k]) + ")"]);
        entry.addEventListener("click", function () { state.hidden[k] = !state.hidden[k]; draw(); });
        legend.append(entry);
      });
      legend.append(el("span", {class: "muted"}, [el("span", {class: "swatch", style: "background:#fff;border:2px solid #111"}),
                                                 "ringed: suspect"]));
    }

    function nearest(mx, my) {
      var best = -1, bestD = 100;
      visible.forEach(function (i) {
        var dx = screenX[i] - mx, dy = screenY[i] - my, d = dx * dx + dy * dy;
        if (d < bestD) { bestD = d; best = i; }
      });
      return best;
    }

    function showTip(i, mx, my) {
      tip.replaceChildren(thumb(P.thumb[i], labelName(i)),
        el("div", {}, [el("b", {text: "label " + labelName(i)})]),
        el("div", {text: "model says " + C[P.pred[i]] + " (" + (P.conf[i] === null ? "?" : P.conf[i].toFixed(2)) + ")"}),
        el("div", {class: "muted", text: (SPLITS[P.split[i]] || "?") + (P.susp[i] === null ? "" : " · suspicion " + P.susp[i].toFixed(2))}),
        el("div", {class: "id", text: P.id[i]}));
      if (P.flags[i]) tip.append(el("div", {class: "flag", style: "color:#c62828", text: P.flags[i]}));
      var W = canvas.clientWidth;
      tip.style.left = (mx + 240 > W ? mx - 236 : mx + 16) + "px";
      tip.style.top = Math.max(0, my - 60) + "px";
      tip.style.display = "block";
    }

    canvas.addEventListener("mousemove", function (e) {
      if (state.pinned >= 0) return;
      var rect = canvas.getBoundingClientRect(), i = nearest(e.clientX - rect.left, e.clientY - rect.top);
      if (i < 0) { tip.style.display = "none"; return; }
      showTip(i, e.clientX - rect.left, e.clientY - rect.top);
    });
    canvas.addEventListener("mouseleave", function () { if (state.pinned < 0) tip.style.display = "none"; });
    canvas.addEventListener("click", function (e) {
      var rect = canvas.getBoundingClientRect(), i = nearest(e.clientX - rect.left, e.clientY - rect.top);
      state.pinned = state.pinned >= 0 || i < 0 ? -1 : i;
      tip.classList.toggle("pinned", state.pinned >= 0);
      if (i < 0) tip.style.display = "none";
    });
    window.addEventListener("resize", draw);
    draw();
  }

  function perClass() {
    var table = el("table", {class: "data"});
    table.append(el("tr", {}, [el("th", {class: "name", text: "class"})].concat(
      SPLITS.map(function (s) { return el("th", {text: s}); }),
      [D.train_scoring.honest ? "train acc. (cross-fitted)" : "train acc. (optimistic)", "val acc.", "test acc.", "suspects"].map(function (t) { return el("th", {text: t}); }))));
    D.per_class.forEach(function (c, k) {
      var suspects = 0;
      for (var i = 0; i < N; i++) if (P.label[i] === k && P.suspect[i]) suspects++;
      table.append(el("tr", {}, [el("td", {class: "name"}, [el("span", {class: "swatch", style: "background:" + classColor(k)}), c.name])].concat(
        SPLITS.map(function (s) { return el("td", {text: num(c.counts[s])}); }),
        [pct(c.accuracy.train), pct(c.accuracy.val), pct(c.accuracy.test), num(suspects)].map(function (t) { return el("td", {text: t}); }))));
    });
    byId("class-table").append(table);
    var box = byId("class-galleries");
    D.per_class.forEach(function (c) {
      var block = el("div", {class: "class-block"}, [el("h3", {text: "Class " + c.name + " · the " + c.suspects.length +
        " most suspicious labels (highest suspicion first; red frame = label? flag)"})]);
      block.append(c.suspects.length ? gallery(c.suspects) : el("p", {class: "muted", text: "No labeled rows."}));
      box.append(block);
    });
  }

  function versionDiff() {
    var d = D.diff, box = byId("diff-body");
    if (!d.version) { box.append(el("p", {class: "muted", text: "No label version recorded yet."})); return; }
    var counts = Object.keys(d.counts).map(function (k) { return el("span", {class: "pill", text: num(d.counts[k]) + " " + k}); });
    box.append(el("p", {}, [el("b", {text: "Version " + d.version}), " recorded " + d.time +
      (d.parent ? ", against version " + d.parent + ": " : ", the first version: ")].concat(counts)));
    if (!d.total) { box.append(el("p", {class: "muted", text: "No rows changed."})); return; }
    if (!d.parent) { box.append(el("p", {class: "muted", text: "Every row is new in the first version; later versions list their edits here."})); return; }
    var table = el("table", {class: "data"});
    table.append(el("tr", {}, ["image", "id", "change", "label", "split", "url"].map(function (t) { return el("th", {class: "name", text: t}); })));
    d.rows.forEach(function (r) {
      function pair(p) { return p[0] === p[1] ? p[1] : (p[0] || "∅") + " → " + (p[1] || "∅"); }
      var image = thumb(r.thumb, r.id);
      image.style.width = image.style.height = "64px";
      table.append(el("tr", {}, [el("td", {class: "name"}, [image])].concat(
        [r.id, r.change, pair(r.label), pair(r.split), pair(r.url)].map(function (t) { return el("td", {class: "name", text: t}); }))));
    });
    box.append(table);
    if (d.total > d.rows.length) box.append(el("p", {class: "muted", text: "… and " + num(d.total - d.rows.length) +
      " more; every change is in .dcloop/versions/" + d.version + "/changes.csv"}));
  }

  function balance() {
    var b = D.balance, totals = b.splits.map(function (_, s) { return b.counts.reduce(function (a, row) { return a + row[s]; }, 0); });
    var shares = b.counts.map(function (row) { return row.map(function (v, s) { return totals[s] ? v / totals[s] : 0; }); });
    var most = Math.max.apply(null, [0.0001].concat([].concat.apply([], shares)));
    var table = el("table", {class: "data balance"});
    table.append(el("tr", {}, [el("th", {class: "name", text: "class"})].concat(
      b.splits.map(function (s, k) { return el("th", {class: "name", text: s + " (" + num(totals[k]) + ")"}); }))));
    b.names.forEach(function (name, n) {
      table.append(el("tr", {}, [el("td", {class: "name", text: name + (b.known[n] || name === "(unlabeled)" ? "" : " (not a class)")})].concat(
        b.counts[n].map(function (v, s) {
          return el("td", {title: (100 * shares[n][s]).toFixed(1) + "% of " + b.splits[s]}, [el("span", {class: "n", text: num(v)}),
            el("span", {class: "bar", style: "width:" + Math.round(90 * shares[n][s] / most) + "px"}),
            el("span", {class: "muted", text: " " + (100 * shares[n][s]).toFixed(0) + "%"})]);
        }))));
    });
    byId("balance-table").append(el("p", {class: "hint", text: "Rows per class in each split; the bar and percentage are the class's share of that split."}), table);
    var dup = D.duplicates, box = byId("duplicates");
    if (!dup.total) { box.append(el("p", {class: "muted", text: "No image appears twice (outside split 'exclude')."})); return; }
    box.append(el("p", {text: num(dup.total) + " image(s) appear on more than one row: " + num(dup.across_splits) +
      " across splits (the test score then measures memory), " + num(dup.conflicting_labels) + " with different labels." +
      (dup.total > dup.groups.length ? " The first " + dup.groups.length + " are shown." : "")}));
    var grid = el("div", {class: "dups"});
    box.append(grid);
    dup.groups.forEach(function (g) {
      var why = [];
      if (g.across_splits) why.push("in " + Array.from(new Set(g.rows.map(function (r) { return r.split; }))).join(" and "));
      if (g.conflicting_labels) why.push("labels " + Array.from(new Set(g.rows.map(function (r) { return r.label || "∅"; }))).join(" and "));
      grid.append(el("div", {class: "dup"}, [el("div", {class: "why", text: why.join("; ")}),
        el("div", {class: "pair"}, g.rows.map(function (r) {
          return el("figure", {class: "mini", title: r.id}, [thumb(r.thumb, r.id), el("figcaption", {}, [
            el("b", {text: r.label || "∅"}), " " + r.split, el("div", {class: "id", text: r.id})])]);
        }))]));
    });
  }

  function safely(name, draw) {
    try { draw(); } catch (e) {
      window.reportErrors.push(name + ": " + e);
      mark();
      var section = byId(name);
      if (section) section.append(el("p", {class: "flag", text: "This part could not be drawn: " + e}));
    }
  }

  safely("summary", summary);
  safely("queue", reviewQueue);
  safely("scores", scoreChart);
  safely("confusion", confusionMatrices);
  safely("map", embeddingMap);
  safely("classes", perClass);
  safely("diff", versionDiff);
  safely("balance", balance);
  byId("footer").textContent = "Written " + D.generated + " by dcloop from run " + D.summary.run_id +
    ". A static page: it reads nothing from the network.";
  document.body.setAttribute("data-ready", "1");
  mark();
})();
