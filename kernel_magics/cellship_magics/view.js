// cellship's live job view (an anywidget ES module; no imports, no CDN: it ships inside
// the Python package and works offline).
//
// State lives per widget model, not per view: the kernel sends small deltas as custom
// messages, and every view of the model (a re-rendered output, a second view) draws from
// the one store. A saved notebook's widget state (`state`, the kernel's final snapshot)
// seeds the store when there is no kernel to ask.
//
// The buttons go through the Jupyter server, not the kernel: while %%train follows a job
// the kernel is busy running the cell and would only see a widget message afterwards.
// Cancel: POST cellship/api/jobs/ID/cancel (the backend's cancel, as Ctrl-C's). Detach:
// POST cellship/api/jobs/ID/detach, then interrupt the kernel; the follower sees the job
// detached and stops following without cancelling. TensorBoard: POST .../tensorboard.

const STORES = new Map();
const COLORS = { train: "#1f77b4", validation: "#ff7f0e" };
const PALETTE = ["#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

function emptyState() {
  return { job: {}, replicas: [], progress: {}, logs: [], logIndex: new Map(), curves: {},
           following: false, message: "", seq: 0 };
}

function storeFor(model) {
  const key = model.get("key");
  let store = STORES.get(key);
  if (!store) {
    store = { state: emptyState(), listeners: new Set() };
    STORES.set(key, store);
  }
  return store;
}

function applySnapshot(state, snap) {
  if (!snap || !snap.job) return;
  state.job = snap.job || {};
  state.replicas = snap.replicas || [];
  state.progress = snap.progress || {};
  state.logs = [];
  state.logIndex = new Map();
  for (const entry of snap.logs || []) addLog(state, entry);
  state.curves = {};
  for (const [k, c] of Object.entries(snap.curves || {})) {
    state.curves[k] = { run: c.run, tag: c.tag, steps: c.steps.slice(), values: c.values.slice() };
  }
}

function addLog(state, entry) {
  const known = state.logIndex.get(entry.id);
  if (known) {
    known.replicas = entry.replicas;
    return;
  }
  const copy = { ...entry };
  state.logs.push(copy);
  state.logIndex.set(copy.id, copy);
  if (state.logs.length > 5000) state.logIndex.delete(state.logs.shift().id);
}

function applyDelta(state, delta) {
  if (delta.job) state.job = delta.job;
  if (delta.replicas) state.replicas = delta.replicas;
  if (delta.progress) Object.assign(state.progress, delta.progress);
  for (const entry of delta.logs || []) addLog(state, entry);
  for (const [k, c] of Object.entries(delta.curves || {})) {
    const curve = state.curves[k] || (state.curves[k] = { run: c.run, tag: c.tag, steps: [], values: [] });
    curve.steps.push(...c.steps);
    curve.values.push(...c.values);
  }
  state.seq += 1;
}

// -- talking to the Jupyter server --------------------------------------------------------
function serverConfig() {
  const node = document.getElementById("jupyter-config-data");
  let config = {};
  try { config = node ? JSON.parse(node.textContent) : {}; } catch (err) { config = {}; }
  let base = config.baseUrl || "/";
  if (!base.endsWith("/")) base += "/";
  return { base, token: config.token || "" };
}

function cookie(name) {
  const match = document.cookie.match("\\b" + name + "=([^;]*)\\b");
  return match ? decodeURIComponent(match[1]) : "";
}

async function post(path) {
  const { base, token } = serverConfig();
  const headers = { "Content-Type": "application/json" };
  const xsrf = cookie("_xsrf");
  if (xsrf) headers["X-XSRFToken"] = xsrf;
  if (token) headers["Authorization"] = "token " + token;
  const reply = await fetch(base + path, { method: "POST", headers, body: "{}",
                                           credentials: "same-origin" });
  let body = {};
  try { body = await reply.json(); } catch (err) { body = {}; }
  if (!reply.ok) throw new Error(body.message || `${reply.status} ${reply.statusText}`);
  return body;
}

// -- drawing ----------------------------------------------------------------------------
function fmtNumber(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return (+v.toPrecision(4)).toString();
}

function fmtEta(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m}:${String(s % 60).padStart(2, "0")}` :
    `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

const SVGNS = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function chart(tag, curves) {
  const W = 260, H = 150, L = 44, R = 6, T = 18, B = 18;
  const box = svg("svg", { width: W, height: H, class: "cellship-chart", "data-tag": tag });
  let xs = [], ys = [];
  for (const c of curves) {
    xs = xs.concat(c.steps);
    ys = ys.concat(c.values.filter((v) => v !== null && isFinite(v)));
  }
  const title = svg("text", { x: L, y: 12, class: "cellship-chart-title" });
  title.textContent = tag;
  box.append(title);
  if (!ys.length) return box;
  let x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const px = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const py = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  box.append(svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, class: "cellship-plot" }));
  for (const [v, y] of [[y1, T + 4], [y0, H - B]]) {
    const label = svg("text", { x: L - 3, y, "text-anchor": "end", class: "cellship-axis" });
    label.textContent = fmtNumber(v);
    box.append(label);
  }
  for (const [v, x, anchor] of [[x0, L, "start"], [x1, W - R, "end"]]) {
    const label = svg("text", { x, y: H - 4, "text-anchor": anchor, class: "cellship-axis" });
    label.textContent = String(v);
    box.append(label);
  }
  curves.forEach((c, i) => {
    const color = COLORS[c.run] || PALETTE[i % PALETTE.length];
    let d = "", pen = false;
    for (let k = 0; k < c.steps.length; k++) {
      const v = c.values[k];
      if (v === null || !isFinite(v)) { pen = false; continue; }
      d += `${pen ? "L" : "M"}${px(c.steps[k]).toFixed(1)},${py(v).toFixed(1)}`;
      pen = true;
    }
    box.append(svg("path", { d, stroke: color, fill: "none", "stroke-width": 1.5,
                             class: "cellship-curve", "data-run": c.run,
                             "data-points": c.steps.length }));
    if (c.steps.length < 30) {
      for (let k = 0; k < c.steps.length; k++) {
        const v = c.values[k];
        if (v === null || !isFinite(v)) continue;
        box.append(svg("circle", { cx: px(c.steps[k]), cy: py(v), r: 2, fill: color }));
      }
    }
    const legend = svg("text", { x: W - R - 4, y: T + 12 + 11 * i, "text-anchor": "end",
                                 fill: color, class: "cellship-legend" });
    legend.textContent = c.run;
    box.append(legend);
  });
  return box;
}

function render({ model, el }) {
  const store = storeFor(model);
  const state = store.state;
  let filter = "";
  let tensorboard = null;
  let notice = "";

  const root = h("div", { class: "cellship-view" });
  el.append(root);

  const act = async (label, fn) => {
    notice = `${label}…`;
    draw();
    try { notice = await fn(); } catch (err) { notice = `${label} failed: ${err.message}`; }
    draw();
  };
  const jobId = () => state.job.id || model.get("job_id");
  const onCancel = () => act("Cancelling", async () => {
    await post(`cellship/api/jobs/${jobId()}/cancel`);
    return "Cancelled: every process of the job is stopped.";
  });
  const onDetach = () => act("Detaching", async () => {
    await post(`cellship/api/jobs/${jobId()}/detach`);
    const kernel = model.get("kernel_id");
    if (kernel && model.get("following")) await post(`api/kernels/${kernel}/interrupt`);
    return `Detached: the job keeps running; %job ${jobId()} attach follows it again.`;
  });
  const onTensorBoard = () => act("Starting TensorBoard", async () => {
    const reply = await post(`cellship/api/jobs/${jobId()}/tensorboard`);
    tensorboard = reply.url;
    return `TensorBoard: ${reply.url}`;
  });
  const onCopy = () => act("Copying", async () => {
    const id = jobId();
    try { await navigator.clipboard.writeText(id); }
    catch (err) {
      const area = h("textarea", {}, id);
      document.body.append(area); area.select(); document.execCommand("copy"); area.remove();
    }
    return `Copied job id ${id}.`;
  });

  function draw() {
    const job = state.job;
    const done = ["succeeded", "failed", "cancelled"].includes(job.status);
    const following = model.get("following");
    root.replaceChildren();
    root.dataset.status = job.status || "";
    root.append(h("div", { class: "cellship-head" },
      h("span", { class: "cellship-name" }, `${job.name || model.get("job_name")} `),
      h("code", { class: "cellship-id" }, jobId()),
      h("span", { class: `cellship-status cellship-${job.status}` }, job.status || "…"),
      job.restarts ? h("span", {}, ` ${job.restarts} restart(s)`) : null,
      h("span", { class: "cellship-buttons" },
        h("button", { class: "cellship-cancel", title: "Stop the job and every process of it",
                      ...(done ? { disabled: "" } : {}), onclick: onCancel }, "Cancel"),
        h("button", { class: "cellship-detach", title: "Stop following; the job goes on",
                      ...(done || !following ? { disabled: "" } : {}), onclick: onDetach }, "Detach"),
        h("button", { class: "cellship-tensorboard", onclick: onTensorBoard }, "TensorBoard"),
        h("button", { class: "cellship-copy", onclick: onCopy }, "Copy job id"))));
    const message = notice || model.get("message");
    if (message) root.append(h("div", { class: "cellship-message" }, message));
    if (job.error && done && job.status !== "succeeded") {
      root.append(h("div", { class: "cellship-error-text" }, job.error));
    } else if (job.waiting && !done) {
      root.append(h("div", { class: "cellship-error-text cellship-waiting-text" }, job.waiting));
    }

    const table = h("table", { class: "cellship-replicas" },
      h("tr", {}, ...["replica", "state", "restarts", "where", "progress"].map((c) => h("th", {}, c))));
    const labels = state.replicas.map((r) => r.replica);
    for (const label of Object.keys(state.progress)) if (!labels.includes(label)) labels.push(label);
    for (const label of labels) {
      const r = state.replicas.find((x) => x.replica === label) || { replica: label, state: "" };
      const p = state.progress[label];
      let cell = h("td", {}, "");
      if (p) {
        const max = p.steps || Math.max(p.step, 1);
        const bits = [`epoch ${p.epoch}/${p.epochs ?? "?"}`, `${p.step}/${p.steps ?? "?"}`];
        if (p.rate) bits.push(`${p.rate.toFixed(1)} steps/s`);
        if (p.eta !== null && p.eta !== undefined && !p.finished) bits.push(`ETA ${fmtEta(p.eta)}`);
        cell = h("td", { class: "cellship-progress-cell" },
          h("progress", { class: "cellship-progress", max: String(max), value: String(p.step),
                          "data-replica": label, "data-epoch": String(p.epoch) }),
          h("span", { class: "cellship-progress-text" }, " " + bits.join(" · ")));
      }
      // On a cluster: the pod, and its node once scheduled; locally the address.
      const where = r.pod
        ? h("td", { class: "cellship-where" }, h("code", { class: "cellship-pod" }, r.pod),
            r.node ? " on " : null, r.node ? h("code", { class: "cellship-node" }, r.node) : null)
        : h("td", { class: "cellship-where" }, r.where || "");
      table.append(h("tr", { class: `cellship-replica cellship-${r.state}`, "data-replica": label },
        h("td", {}, label),
        h("td", { class: "cellship-state" }, r.state,
          r.reason ? h("span", { class: "cellship-reason" }, ` (${r.reason})`) : null),
        h("td", {}, String(r.restarts ?? 0)), where, cell));
      if (r.diagnosis) {
        table.append(h("tr", { class: "cellship-diagnosis" }, h("td", { colspan: "5" }, r.diagnosis)));
      }
    }
    root.append(table);

    const byTag = {};
    for (const c of Object.values(state.curves)) (byTag[c.tag] || (byTag[c.tag] = [])).push(c);
    const tags = Object.keys(byTag).sort((a, b) =>
      (a.startsWith("epoch_") ? 0 : 1) - (b.startsWith("epoch_") ? 0 : 1) || a.localeCompare(b));
    const charts = h("div", { class: "cellship-charts" });
    for (const tag of tags) {
      charts.append(chart(tag, byTag[tag].sort((a, b) => a.run.localeCompare(b.run))));
    }
    if (!tags.length) charts.append(h("div", { class: "cellship-waiting" }, "curves appear here once the job reports metrics"));
    root.append(charts);

    const replicasSeen = [...new Set(state.logs.flatMap((e) => e.replicas))].sort();
    const select = h("select", { class: "cellship-filter", onchange: (e) => { filter = e.target.value; draw(); } },
      h("option", { value: "" }, "all replicas"),
      ...replicasSeen.map((r) => {
        const o = h("option", { value: r }, r);
        if (r === filter) o.selected = true;
        return o;
      }));
    const pre = h("pre", { class: "cellship-logs" });
    for (const entry of state.logs) {
      if (filter && !entry.replicas.includes(filter)) continue;
      pre.append(h("div", { class: entry.error ? "cellship-line cellship-error" : "cellship-line" },
        h("span", { class: "cellship-who" }, `[${entry.replicas.join(", ")}] `), entry.text));
    }
    root.append(h("div", { class: "cellship-logbar" }, "logs ", select), pre);
    requestAnimationFrame(() => { pre.scrollTop = pre.scrollHeight; });
    if (tensorboard) {
      root.append(h("iframe", { class: "cellship-tb", src: tensorboard, width: "100%", height: "600" }));
    }
  }

  let pending = false;
  const redraw = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  };
  store.listeners.add(redraw);
  const onChange = () => redraw();
  model.on("change:following", onChange);
  model.on("change:message", onChange);
  draw();
  return () => {
    store.listeners.delete(redraw);
    model.off("change:following", onChange);
    model.off("change:message", onChange);
  };
}

function initialize({ model }) {
  const store = storeFor(model);
  applySnapshot(store.state, model.get("state"));
  const notify = () => { for (const l of store.listeners) l(); };
  const onMessage = (msg) => {
    if (msg.type === "snapshot") applySnapshot(store.state, msg.state);
    else if (msg.type === "delta") applyDelta(store.state, msg);
    notify();
    // For the benchmarks and browser tests: how long after a replica wrote a progress
    // event (its `t`, seconds) the browser had it (same clock on one machine).
    const now = Date.now();
    const lat = window.__cellshipLatencies || (window.__cellshipLatencies = []);
    for (const p of Object.values(msg.progress || {})) {
      if (p.t) lat.push(now - p.t * 1000);
    }
    if (lat.length > 10000) lat.splice(0, lat.length - 10000);
  };
  const onState = () => { applySnapshot(store.state, model.get("state")); notify(); };
  model.on("msg:custom", onMessage);
  model.on("change:state", onState);
  // A view with nothing to show asks the kernel (answered once it is free); a saved
  // notebook's restored widget has no kernel to ask.
  if (!store.state.job.id) {
    try { model.send({ type: "hello" }); } catch (err) { /* no kernel: nothing to ask */ }
  }
  return () => {
    model.off("msg:custom", onMessage);
    model.off("change:state", onState);
  };
}

export default { initialize, render };
