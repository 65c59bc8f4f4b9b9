// The manager's dashboard: a snapshot on connect, then occupancy, passages and gate states as they
// happen, from the server-sent event stream. Numbers, bar colours and the chart change in place.
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root) return;
  var site = root.dataset.site;
  var state = { day: null, entries: new Array(1440).fill(0), exits: new Array(1440).fill(0),
                denials: {}, refused: 0, gates: {} };
  // The page's words, in its language, from the template's JSON block (one catalogue for all texts).
  var T = JSON.parse(document.getElementById("i18n").textContent);
  var texts = T.reasons;
  function say(template, values) {
    return template.replace(/\{(\w+)\}/g, function (all, key) { return key in values ? values[key] : all; });
  }
  var numbers = new Intl.NumberFormat(document.documentElement.lang || undefined);
  function count(n) { return numbers.format(n); }
  var dates = new Intl.DateTimeFormat(document.documentElement.lang || undefined, { dateStyle: "medium" });
  function $(id) { return document.getElementById(id); }
  function text(el, value) { if (el.textContent !== String(value)) el.textContent = value; }
  function el(tag, cls, content) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (content !== undefined) e.textContent = content;
    return e;
  }

  // --- occupancy -------------------------------------------------------------------------------
  function level(inside, capacity) {
    if (!capacity) return "ok";
    var share = inside / capacity;
    return share >= 0.95 ? "full" : share >= 0.8 ? "warn" : "ok";
  }
  function renderOccupancy(occ) {
    text($("t-inside"), count(occ.inside));
    text($("t-entries"), count(occ.entries_today));
    text($("t-exits"), count(occ.exits_today));
    // While the central is catching up on a rush, the counts include the gates' own (the light path).
    var source = $("count-source");
    source.hidden = !(occ.source === "gates" && occ.pending > 0);
    if (!source.hidden) text(source, say(T.from_gates, { n: count(occ.pending) }));
    root.dataset.countSource = occ.source || "stored";
    var box = $("zones");
    occ.zones.forEach(function (z) {
      var row = document.getElementById("zone-" + z.zone);
      if (!row) {
        row = el("div", "zone");
        row.id = "zone-" + z.zone;
        row.dataset.zone = z.zone;
        var label = el("div", "label");
        label.appendChild(el("span", "name"));
        label.appendChild(el("span", "count"));
        row.appendChild(label);
        var bar = el("div", "bar");
        bar.appendChild(el("span"));
        row.appendChild(bar);
        box.appendChild(row);
      }
      var lv = level(z.inside, z.capacity);
      text(row.querySelector(".name"), (z.name || say(T.zone, { zone: z.zone })));
      text(row.querySelector(".count"), z.capacity ? (count(z.inside) + " / " + count(z.capacity)) : count(z.inside));
      var bar = row.querySelector(".bar");
      bar.className = "bar level-" + lv;
      row.dataset.level = lv;
      row.dataset.inside = z.inside;
      var pct = z.capacity ? Math.min(100, 100 * z.inside / z.capacity) : (z.inside > 0 ? 100 : 0);
      bar.firstChild.style.width = pct.toFixed(1) + "%";
    });
  }

  // --- denials ---------------------------------------------------------------------------------
  function renderDenials() {
    text($("t-refused"), count(state.refused));
    var body = $("denials");
    var reasons = Object.keys(state.denials).sort(function (a, b) { return state.denials[b] - state.denials[a]; });
    body.textContent = "";
    if (!reasons.length) {
      var tr = el("tr"); var td = el("td", "muted", T.no_refusals); td.colSpan = 2;
      tr.appendChild(td); body.appendChild(tr); return;
    }
    reasons.forEach(function (r) {
      var tr = el("tr");
      tr.dataset.reason = r;
      tr.appendChild(el("td", null, texts[r] || r));
      tr.appendChild(el("td", "num", count(state.denials[r])));
      body.appendChild(tr);
    });
  }

  // --- chart -----------------------------------------------------------------------------------
  var xs = []; for (var i = 0; i < 1440; i++) xs.push(i * 60);
  var chart = null;
  function hhmm(sec) {
    var m = Math.round(sec / 60);
    return String(Math.floor(m / 60)).padStart(2, "0") + ":" + String(m % 60).padStart(2, "0");
  }
  // The day so far, not 24 hours: from half an hour before the first passage to half an hour after
  // the last one (the whole day while there is none), so the minutes stay readable.
  function activeWindow() {
    var first = -1, last = -1;
    for (var i = 0; i < 1440; i++) {
      if (state.entries[i] || state.exits[i]) { if (first < 0) first = i; last = i; }
    }
    if (first < 0) return [0, 1439 * 60];
    return [Math.max(0, first - 30) * 60, Math.min(1439, last + 30) * 60];
  }
  function makeChart() {
    var box = $("chart");
    var opts = {
      width: Math.max(300, box.clientWidth - 10), height: 260,
      scales: { x: { time: false, range: activeWindow } },
      axes: [{ values: function (u, splits) { return splits.map(hhmm); }, space: 60 }, {}],
      series: [{ label: T.time, value: function (u, v) { return v == null ? "" : hhmm(v); } },
               { label: T.entries, stroke: "#1a7f37", width: 1.5 },
               { label: T.exits, stroke: "#1565c0", width: 1.5 }],
    };
    chart = new uPlot(opts, [xs, state.entries, state.exits], box);
    window.addEventListener("resize", function () { chart.setSize({ width: Math.max(300, box.clientWidth - 10), height: 260 }); });
  }
  var pending = false;
  function redrawChart() {
    if (!chart || pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; chart.setData([xs, state.entries, state.exits]); });
  }

  // --- gates -----------------------------------------------------------------------------------
  function renderGate(g) {
    var id = "gate-" + g.gate;
    var tile = document.getElementById(id);
    if (!tile) {
      tile = el("div", "gate"); tile.id = id; tile.dataset.gate = g.gate;
      tile.appendChild(el("strong", "gname", g.gate));
      tile.appendChild(el("div", "gstate"));
      tile.appendChild(el("div", "gmode muted"));
      tile.appendChild(el("div", "galarms"));
      $("gates").appendChild(tile);
    }
    var alarms = (g.alarms || []).slice();
    if (g.controller_ok === false) alarms.push(T.controller_fault);
    (g.readers || []).forEach(function (r) { if (!r.ok) alarms.push(say(T.reader_fault, { reader: r.name })); });
    tile.className = "gate " + (g.online ? "online" : "offline") + (alarms.length ? " alarm" : "");
    tile.dataset.online = g.online ? "1" : "0";
    text(tile.querySelector(".gstate"), g.online ? T.online : T.offline);
    var mode = T.modes[g.mode] || g.mode;
    text(tile.querySelector(".gmode"), g.zone ? say(T.mode_zone, { mode: mode, zone: g.zone }) : say(T.mode, { mode: mode }));
    text(tile.querySelector(".galarms"), alarms.join(", "));
  }

  // --- the stream ------------------------------------------------------------------------------
  function onSnapshot(s) {
    state.day = s.day;
    root.dataset.day = s.day;
    var d = s.day.split("-");
    text($("day"), dates.format(new Date(+d[0], +d[1] - 1, +d[2])));
    state.entries.fill(0); state.exits.fill(0);
    Object.keys(s.minutes).forEach(function (m) { state.entries[+m] = s.minutes[m][0]; state.exits[+m] = s.minutes[m][1]; });
    state.denials = s.denials; state.refused = s.refused;
    renderOccupancy(s.occupancy);
    renderDenials();
    $("gates").textContent = "";
    s.gates.forEach(function (g) { state.gates[g.gate] = g; renderGate(g); });
    if (!chart) makeChart(); else redrawChart();
    root.dataset.ready = "1";
  }
  function onPassage(p) {
    if (p.day > state.day) {  // the park's day rolled over: start the new day afresh (one fetch at a time)
      if (Date.now() - (state.renewed || 0) > 2000) { state.renewed = Date.now(); poll(); }
      return;
    }
    if (p.day !== state.day) return;  // yesterday's late events: the snapshot of a reload shows them
    if (p.passed) {
      var arr = p.direction === "in" ? state.entries : state.exits;
      arr[p.minute] += p.headcount;
      redrawChart();
    }
    if (p.decision === "refused") {
      state.denials[p.reason] = (state.denials[p.reason] || 0) + 1;
      state.refused += 1;
      renderDenials();
    }
    root.dataset.passages = String((+root.dataset.passages || 0) + 1);
  }
  function onGate(g) {
    var known = state.gates[g.gate] || { gate: g.gate };
    ["online", "mode", "alarms", "controller_ok", "readers"].forEach(function (k) { known[k] = g[k]; });
    state.gates[g.gate] = known;
    renderGate(known);
  }
  // Without a stream (the server refused one: too many open for this login, or all in use; 429/503
  // close an EventSource for good) the page polls the snapshot and tries the stream again later.
  var POLL_MS = 10000, RETRY_STREAM_MS = 60000;
  var pollTimer = null;
  function poll() {
    fetch(root.dataset.snapshot, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (s) { onSnapshot(s); root.dataset.polls = String((+root.dataset.polls || 0) + 1); })
      .catch(function () { /* the next poll tries again */ });
  }
  function fallBack() {
    var badge = $("live-state");
    badge.textContent = say(T.not_live, { seconds: POLL_MS / 1000 });
    badge.className = "badge warn live-state";
    if (pollTimer === null) { poll(); pollTimer = setInterval(poll, POLL_MS); }
    setTimeout(connect, RETRY_STREAM_MS);
  }
  function connect() {
    var source = new EventSource(root.dataset.stream);
    var badge = $("live-state");
    source.onopen = function () {
      badge.textContent = T.live; badge.className = "badge ok live-state";
      if (pollTimer !== null) { clearInterval(pollTimer); pollTimer = null; }
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CLOSED) { fallBack(); return; }
      badge.textContent = T.reconnecting; badge.className = "badge warn live-state";
    };
    source.onmessage = function (e) {
      var data = JSON.parse(e.data);
      if (data.site && data.site !== site) return;
      if (data.type === "snapshot") onSnapshot(data);
      else if (data.type === "occupancy") renderOccupancy(data);
      else if (data.type === "passage") onPassage(data);
      else if (data.type === "gate") onGate(data);
    };
  }
  connect();
})();
