// lwd dashboard: renders the state the server streams (Server-Sent Events), replays episodes and
// sends the operators' pin actions. Every string from the server is set as text (textContent,
// option.text) or escaped for plotly (plotText), never parsed as HTML.
"use strict";
(() => {
  const TOKEN_KEY = "lwd-dashboard-token";
  const $ = (id) => document.getElementById(id);
  const SOURCE = ["policy", "teleop", "hold"];
  const PLOT_CONFIG = { displayModeBar: false, responsive: true };
  const state = {};

  // --- the token: from the URL fragment (#token=...) into this tab's session storage ---------------
  function readToken() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }
  const token = readToken();

  function api(path, opts = {}) {
    const headers = Object.assign({ "X-LWD-Token": token }, opts.headers || {});
    return fetch(path, Object.assign({}, opts, { headers, cache: "no-store" }));
  }

  // --- small DOM helpers (text only) -----------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "className") node.className = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else if (k === "title") node.title = v;
      else if (k === "onclick") node.addEventListener("click", v);
      else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function td(text, className) {
    return el("td", className ? { className } : {}, text);
  }
  function badge(text, kind) {
    return el("span", { className: "badge " + (kind || "") }, text);
  }
  function setText(id, text) {
    $(id).textContent = text;
  }
  function kv(dl, pairs) {
    dl.replaceChildren();
    for (const [k, v] of pairs) dl.append(el("dt", {}, k), el("dd", {}, v));
  }
  // Plotly renders a few HTML-like tags in labels: escape what came from peers.
  function plotText(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(0) + "%");
  const num = (x, d = 3) => (x === null || x === undefined ? "–" : Number(x).toPrecision(d));
  const ms = (s) => (s === null || s === undefined ? "–" : (1000 * s).toFixed(0) + " ms");
  const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "–");
  function ago(s) {
    if (s === null || s === undefined) return "never";
    if (s < 60) return s.toFixed(1) + " s ago";
    if (s < 3600) return (s / 60).toFixed(0) + " min ago";
    return (s / 3600).toFixed(1) + " h ago";
  }
  function plot(id, traces, layout) {
    if (!window.Plotly) return;
    const base = {
      margin: { l: 48, r: 48, t: 28, b: 32 },
      font: { size: 11 },
      legend: { orientation: "h", y: -0.22, font: { size: 10 } },
      paper_bgcolor: "rgba(0,0,0,0)",
    };
    window.Plotly.react($(id), traces, Object.assign(base, layout), PLOT_CONFIG);
  }

  // --- live state ---------------------------------------------------------------------------------
  function connect() {
    const es = new EventSource("api/events?token=" + encodeURIComponent(token));
    es.addEventListener("open", () => {
      $("conn").className = "badge live";
      setText("conn", "live");
    });
    es.addEventListener("error", async () => {
      $("conn").className = "badge error";
      setText("conn", "reconnecting…");
      try {
        const r = await api("api/state", { method: "HEAD" });
        if (r.status === 401) {
          es.close();
          setText("conn", "token refused: open the URL the dashboard printed");
        }
      } catch (exc) {
        // the server is down: EventSource keeps retrying
      }
    });
    es.addEventListener("state", (ev) => {
      const changed = JSON.parse(ev.data);
      Object.assign(state, changed);
      if (changed.fleet) renderFleet(changed.fleet);
      if (changed.policy) renderPolicy(changed.policy);
      if (changed.learning) renderLearning(changed.learning);
      if (changed.episodes) renderEpisodes(changed.episodes);
      document.body.dataset.updated = String(Date.now());
    });
  }

  function renderFleet(f) {
    setText("run-dir", f.run_dir);
    const b = f.bridge;
    if (!b) setText("bridge-summary", "bridge: no status.json yet");
    else if (!b.up) setText("bridge-summary", `bridge DOWN (status ${b.status_age_s.toFixed(0)} s old)`);
    else {
      setText(
        "bridge-summary",
        `bridge ${b.health.toUpperCase()}${b.problems.length ? " (" + b.problems.join("; ") + ")" : ""}` +
          ` · snapshot v${b.snapshot_version} · ${b.episodes_in_store} episodes · ${b.sessions} sessions`
      );
    }
    const tbody = $("robots").tBodies[0];
    tbody.replaceChildren();
    for (const r of f.robots) {
      const policy = el("td", {}, r.policy_version || "–");
      if (!r.policy_ok) policy.append(" ", badge("load FAILED", "fault"));
      else if (r.policy_version && !r.on_target) policy.append(" ", badge("not current", "idle"));
      tbody.append(
        el(
          "tr",
          { dataset: { robot: r.id } },
          td(r.id),
          el("td", {}, badge(r.mode, r.mode)),
          td(r.task || "–"),
          policy,
          td(r.episodes, "num"),
          td(r.interventions, "num"),
          td(pct(r.success_rate), "num"),
          td(ago(r.last_seen_age_s))
        )
      );
    }
    $("fleet-empty").hidden = f.robots.length > 0;
  }

  let versionOptions = "";
  function renderPolicy(p) {
    const dl = $("policy-summary");
    if (!p.available) {
      kv(dl, [["policy store", p.reason]]);
      return;
    }
    const pin = p.pin;
    kv(dl, [
      ["newest", p.newest || "–"],
      ["pinned", p.pinned ? `${p.pinned} (${pin.action} by ${pin.by}: ${pin.why})` : "– (serving the newest)"],
      ["serving", p.serving ? p.serving + (p.serving_as !== p.serving ? ` (robots see it as ${p.serving_as})` : "") : "–"],
    ]);
    const key = p.versions.map((v) => v.version).join(",");
    if (key !== versionOptions) {
      const sel = $("pin-version");
      const keep = sel.value;
      sel.replaceChildren();
      for (const v of p.versions) {
        const label = `${v.version} · step ${v.training_step} · ${v.episodes} episodes`;
        sel.append(new Option(label, v.version));
      }
      if (keep && p.versions.some((v) => v.version === keep)) sel.value = keep;
      versionOptions = key;
    }
    const vbody = $("versions").tBodies[0];
    vbody.replaceChildren();
    for (const v of p.versions) {
      const marks = el("td", {});
      if (v.version === p.newest) marks.append(badge("newest", "idle"), " ");
      if (v.version === p.pinned) marks.append(badge("pinned", "teleop"), " ");
      if (v.version === p.serving) marks.append(badge("serving", "running"));
      vbody.append(
        el(
          "tr",
          { dataset: { version: v.version } },
          td(v.version, "mono"),
          td(v.training_step, "num"),
          td(clock(v.created_at)),
          td(v.episodes, "num"),
          td(v.episodes ? `${v.succeeded_alone} (${pct(v.succeeded_alone / v.episodes)})` : "–", "num"),
          marks
        )
      );
    }
    const tbody = $("pin-log").tBodies[0];
    tbody.replaceChildren();
    for (const e of p.log) {
      tbody.append(
        el(
          "tr",
          {},
          td(clock(e.at)),
          td(e.action),
          td(e.serving + (e.served_as && e.served_as !== e.serving ? ` as ${e.served_as}` : "")),
          td(e.by),
          el("td", { title: e.why, className: "wrap" }, e.why)
        )
      );
    }
  }

  function renderLearning(l) {
    const lr = l.learner;
    const losses = Object.entries(lr.latest || {})
      .filter(([k]) => k.endsWith("_loss"))
      .map(([k, v]) => `${k} ${num(v)}`)
      .join("  ");
    const b = state.fleet && state.fleet.bridge;
    kv($("learning-summary"), [
      ["episodes", `${l.episodes}: success ${pct(l.success)}, without the operator ${pct(l.alone)}`],
      ["interventions / episode", num(l.interventions_per_episode)],
      ["learner step", lr.step === null ? "not started (no metrics.jsonl yet)" : `${lr.step} (${lr.phase || "?"})`],
      ["losses", losses || "–"],
      [
        "episode → learner",
        b ? `p50 ${ms(b.commit_latency_s.p50)}, p99 ${ms(b.commit_latency_s.p99)}` : "–",
      ],
      ["publish → loaded", b ? `p50 ${ms(b.policy_latency_s.p50)}, p99 ${ms(b.policy_latency_s.p99)}` : "–"],
    ]);

    const v = l.versions;
    const labels = v.map((x) => plotText(x.label));
    const err = (key) => ({
      type: "data",
      symmetric: false,
      array: v.map((x) => (x[key + "_ci"] ? x[key + "_ci"][1] - x[key] : 0)),
      arrayminus: v.map((x) => (x[key + "_ci"] ? x[key] - x[key + "_ci"][0] : 0)),
      thickness: 1,
    });
    const hover = v.map((x) => `n=${x.n}`);
    plot(
      "plot-versions",
      [
        { x: labels, y: v.map((x) => x.success), error_y: err("success"), name: "success (with the operator)", mode: "lines+markers", text: hover, line: { color: "#8fb3e8" } },
        { x: labels, y: v.map((x) => x.alone), error_y: err("alone"), name: "succeeded without the operator", mode: "lines+markers", text: hover, line: { color: "#1a7f37" } },
        { x: labels, y: v.map((x) => x.interventions_per_episode), name: "interventions / episode", type: "bar", yaxis: "y2", marker: { color: "rgba(255,140,0,0.35)" } },
      ],
      {
        title: { text: "per policy version (95% Wilson intervals)", font: { size: 12 } },
        yaxis: { range: [0, 1.05], tickformat: ".0%" },
        yaxis2: { overlaying: "y", side: "right", rangemode: "tozero", showgrid: false, title: { text: "interv./ep.", font: { size: 10 } } },
        xaxis: { type: "category" },
      }
    );

    const s = lr.series || {};
    const lossKeys = Object.keys(s).filter((k) => k.endsWith("_loss"));
    plot(
      "plot-losses",
      lossKeys.map((k) => ({ x: s.step, y: s[k], name: k, mode: "lines" })),
      {
        title: { text: lossKeys.length ? "learner losses over learner steps" : "learner losses (none logged yet)", font: { size: 12 } },
        yaxis: { rangemode: "tozero" },
      }
    );
    const hasTau = "tau_mean" in s || "value_entropy" in s;
    plot(
      "plot-tau",
      hasTau
        ? [
            { x: s.step, y: s.tau_mean, name: "tau (mean)", mode: "lines", line: { color: "#1f5fbf" } },
            { x: s.step, y: s.value_entropy, name: "value entropy", mode: "lines", yaxis: "y2", line: { color: "#c62828" } },
          ]
        : [],
      {
        title: { text: hasTau ? "adaptive tau (left) and value entropy (right) over learner steps" : "tau / value entropy: not logged (needs a DIVL value head)", font: { size: 12 } },
        yaxis2: { overlaying: "y", side: "right", showgrid: false },
      }
    );
    const lat = l.latency || [];
    const t = lat.map((x) => new Date(x.time * 1000));
    const msOf = (k) => lat.map((x) => (x[k] === null ? null : 1000 * x[k]));
    plot(
      "plot-latency",
      [
        { x: t, y: msOf("commit_p50"), name: "episode→learner p50", mode: "lines", line: { color: "#1f5fbf" } },
        { x: t, y: msOf("commit_p99"), name: "p99", mode: "lines", line: { color: "#1f5fbf", dash: "dot" } },
        { x: t, y: msOf("policy_p50"), name: "publish→loaded p50", mode: "lines", line: { color: "#b35c00" } },
        { x: t, y: msOf("policy_p99"), name: "p99", mode: "lines", line: { color: "#b35c00", dash: "dot" } },
      ],
      { title: { text: lat.length ? "latencies (ms, from the bridge)" : "latencies: no bridge status yet", font: { size: 12 } }, yaxis: { rangemode: "tozero" } }
    );
  }

  function renderEpisodes(e) {
    setText("episodes-total", `${e.total} in the store` + (e.total > e.recent.length ? `, newest ${e.recent.length} listed` : ""));
    const tbody = $("episode-table").tBodies[0];
    tbody.replaceChildren();
    for (const x of e.recent) {
      const outcome = el("td", {}, badge(x.success ? "success" : "failure", x.success ? "success" : "failure"));
      if (x.alone) outcome.append(" ", badge("alone", "policy"));
      const row = el(
        "tr",
        { dataset: { episode: x.id }, title: x.id, onclick: () => openReplay(x.id) },
        td(clock(x.ended_at)),
        td(x.robot),
        td(x.task),
        td(x.version),
        outcome,
        td(`${x.interventions} (${x.intervention_steps} steps)`, "num"),
        td(`${x.duration_s.toFixed(1)} s`, "num")
      );
      if (x.id === replay.id) row.classList.add("selected");
      tbody.append(row);
    }
  }

  // --- policy control -----------------------------------------------------------------------------
  async function policyAction(action) {
    const out = $("policy-result");
    const why = $("pin-why").value.trim();
    if (!why) {
      out.className = "error";
      out.textContent = "A reason is required (it is kept in the pin log).";
      $("pin-why").focus();
      return;
    }
    const body = { why };
    if (action === "pin") body.version = $("pin-version").value;
    out.className = "muted";
    out.textContent = `${action}…`;
    try {
      const r = await api("api/policy/" + action, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const j = await r.json().catch(() => ({}));
      out.className = r.ok ? "ok" : "error";
      out.textContent = r.ok ? j.message : `${action} refused (${r.status}): ${j.error || r.statusText}`;
      if (r.ok) $("pin-why").value = "";
    } catch (exc) {
      out.className = "error";
      out.textContent = `${action} failed: ${exc}`;
    }
  }
  $("pin-btn").addEventListener("click", () => policyAction("pin"));
  $("revert-btn").addEventListener("click", () => policyAction("revert"));
  $("unpin-btn").addEventListener("click", () => policyAction("unpin"));

  // --- replay ---------------------------------------------------------------------------------------
  const replay = { id: null, d: null, step: 0, playing: false, t0: 0, time0: 0, imgs: [], cursorAt: 0, valuesTimer: 0 };

  async function openReplay(id) {
    stopPlay();
    clearTimeout(replay.valuesTimer);
    replay.id = id;
    for (const row of $("episode-table").tBodies[0].rows) row.classList.toggle("selected", row.dataset.episode === id);
    $("replay").hidden = false;
    setText("replay-title", id);
    setText("replay-meta", "loading…");
    const r = await api("api/episodes/" + encodeURIComponent(id));
    if (replay.id !== id) return;
    if (!r.ok) {
      setText("replay-meta", `cannot load ${id}: ${r.status}`);
      return;
    }
    const d = await r.json();
    replay.d = d;
    const takeovers = d.teleop_segments.length;
    setText(
      "replay-meta",
      `${d.robot} · ${d.task}: “${d.instruction}” · ${d.outcome.label} (${d.outcome.reason}) · ${d.steps} steps, ` +
        `${d.time.length ? d.time[d.time.length - 1].toFixed(1) : 0} s · ${takeovers} takeover${takeovers === 1 ? "" : "s"} · ` +
        `policy ${d.policy_versions.filter((v) => v !== "teleop").join(", ") || "–"}`
    );
    const cams = $("cameras");
    cams.replaceChildren();
    replay.imgs = d.cameras.map((cam, i) => {
      const img = el("img", { id: "cam-" + i, alt: cam, dataset: { camera: cam, step: "-1" } });
      cams.append(el("figure", {}, img, el("figcaption", {}, cam)));
      return img;
    });
    const sel = $("joint-select");
    sel.replaceChildren();
    d.joint_names.forEach((name, j) => sel.append(new Option(name, String(j))));
    sel.value = String(mostMovingJoint(d));
    $("scrub").max = String(Math.max(0, d.steps - 1));
    drawJoints();
    showStep(0);
    $("replay").scrollIntoView({ block: "start" });
    loadValues(id);
  }

  function mostMovingJoint(d) {
    let best = 0;
    let bestRange = -1;
    d.joint_names.forEach((_, j) => {
      const ys = d.action.map((row) => row[j]).filter((y) => y !== null);
      const range = ys.length ? Math.max(...ys) - Math.min(...ys) : 0;
      if (range > bestRange) [best, bestRange] = [j, range];
    });
    return best;
  }

  function teleopShapes(d) {
    return d.teleop_segments.map(([a, b]) => ({
      type: "rect", xref: "x", yref: "paper", x0: a - 0.5, x1: b + 0.5, y0: 0, y1: 1,
      fillcolor: "rgba(255,140,0,0.18)", line: { width: 0 }, layer: "below",
    }));
  }
  function cursor(step) {
    return { type: "line", xref: "x", yref: "paper", x0: step, x1: step, y0: 0, y1: 1, line: { color: "#1d2330", width: 1 } };
  }

  function drawJoints() {
    const d = replay.d;
    if (!d) return;
    const j = Number($("joint-select").value);
    const x = d.action.map((_, i) => i);
    plot(
      "plot-joints",
      [
        { x, y: d.joint_pos.map((row) => row[j]), name: "measured", mode: "lines", line: { color: "#1f5fbf" } },
        { x, y: d.action.map((row) => row[j]), name: "commanded", mode: "lines", line: { color: "#c62828", dash: "dash" } },
        { x: [null], y: [null], name: "operator takeover", mode: "markers", marker: { symbol: "square", size: 12, color: "rgba(255,140,0,0.45)" } },
      ],
      {
        title: { text: plotText(`joint ${d.joint_names[j]}: commanded vs measured`), font: { size: 12 } },
        shapes: [...teleopShapes(d), cursor(replay.step)],
        xaxis: { title: { text: "control step", font: { size: 10 } }, range: [0, Math.max(1, d.steps - 1)] },
      }
    );
  }
  $("joint-select").addEventListener("change", drawJoints);

  function showStep(i) {
    const d = replay.d;
    if (!d) return;
    replay.step = i;
    $("scrub").value = String(i);
    setText("step-label", `step ${i + 1}/${d.steps} · t ${d.time[i] !== undefined ? d.time[i].toFixed(2) : "?"} s`);
    const src = SOURCE[d.source[i]] || "?";
    $("source-label").className = "badge " + src;
    setText("source-label", src === "teleop" ? "operator" : src);
    replay.imgs.forEach((img, c) => loadFrame(img, c, i));
    const now = performance.now();
    if (now - replay.cursorAt > 150 || !replay.playing) {
      replay.cursorAt = now;
      moveCursor(i);
    }
  }

  function moveCursor(i) {
    if (!window.Plotly || !replay.d) return;
    const j = $("plot-joints");
    if (j.data) window.Plotly.relayout(j, { shapes: [...teleopShapes(replay.d), cursor(i)] });
  }

  async function loadFrame(img, c, i) {
    if (img.dataset.loading) {
      img.dataset.want = String(i); // the newest wish wins; frames in between are skipped
      return;
    }
    img.dataset.loading = "1";
    const id = replay.id;
    try {
      const r = await api(`api/episodes/${encodeURIComponent(id)}/frames/${encodeURIComponent(img.dataset.camera)}/${i}`);
      if (r.ok && replay.id === id) {
        const url = URL.createObjectURL(await r.blob());
        const old = img.src;
        img.src = url;
        img.dataset.step = String(i);
        if (old.startsWith("blob:")) URL.revokeObjectURL(old);
      }
    } finally {
      delete img.dataset.loading;
      const want = img.dataset.want;
      delete img.dataset.want;
      if (want !== undefined && Number(want) !== i && replay.id === id) loadFrame(img, c, Number(want));
    }
  }

  function play() {
    const d = replay.d;
    if (!d) return;
    if (replay.step >= d.steps - 1) showStep(0);
    replay.playing = true;
    setText("play-btn", "Pause");
    replay.t0 = performance.now();
    replay.time0 = d.time[replay.step] || 0;
    requestAnimationFrame(tick);
  }
  function stopPlay() {
    replay.playing = false;
    setText("play-btn", "Play");
    moveCursor(replay.step);
  }
  function tick() {
    const d = replay.d;
    if (!replay.playing || !d) return;
    const span = d.time.length ? d.time[d.time.length - 1] : 0;
    const elapsed = (performance.now() - replay.t0) / 1000;
    let i = replay.step;
    if (span > 0) {
      const target = replay.time0 + elapsed;
      while (i + 1 < d.steps && d.time[i + 1] <= target) i++;
    } else {
      i = Math.min(d.steps - 1, Math.floor(elapsed * 30)); // no stamps: the 30 Hz control rate
    }
    if (i !== replay.step) showStep(i);
    if (i >= d.steps - 1) stopPlay();
    else requestAnimationFrame(tick);
  }
  $("play-btn").addEventListener("click", () => (replay.playing ? stopPlay() : play()));
  $("scrub").addEventListener("input", () => {
    stopPlay();
    showStep(Number($("scrub").value));
  });

  async function loadValues(id) {
    const status = $("values-status");
    const img = $("values-img");
    img.hidden = true;
    status.textContent = "critic value along the episode: computing…";
    let v;
    try {
      const r = await api(`api/episodes/${encodeURIComponent(id)}/values`);
      v = await r.json();
    } catch (exc) {
      v = { state: "failed", reason: String(exc) };
    }
    if (replay.id !== id) return;
    if (v.state === "computing" || v.state === "queued") {
      status.textContent = `critic value along the episode: computing… (the learner's value-plot, checkpoint step ${v.checkpoint_step})`;
      replay.valuesTimer = setTimeout(() => loadValues(id), 2000);
      return;
    }
    if (v.state !== "ready") {
      status.textContent = `critic value along the episode: ${v.state}: ${v.reason || "?"}`;
      return;
    }
    const r = await api(`api/episodes/${encodeURIComponent(id)}/values.png`);
    if (!r.ok || replay.id !== id) return;
    const old = img.src;
    img.src = URL.createObjectURL(await r.blob());
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    img.hidden = false;
    status.textContent = `critic value along the episode (learner checkpoint step ${v.checkpoint_step}):`;
  }

  connect();
})();
