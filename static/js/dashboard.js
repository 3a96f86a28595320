// Phoenix ML live dashboards: one websocket per page, snapshots every second, pushed events.
// Plain ES module, no build step. uPlot is loaded before this file as a classic script.

const MAX_POINTS = 300; // five minutes at one snapshot a second
const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;
// Application close codes from monitoring/consumers.py: retrying cannot help.
const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_FORBIDDEN = 4403;
const CLOSE_UNKNOWN_MODEL = 4404;

const body = document.body;
const page = body.dataset.page;
const statusEl = document.getElementById("live-status");

// Read by the browser tests and handy in the console.
const live = { connects: 0, snapshots: 0, events: 0, state: "connecting", last: null };
window.phoenixLive = live;

// --- formatting -------------------------------------------------------------------------

function fmtNumber(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}
function fmtCount(value) {
  if (value === null || value === undefined) return "–";
  return Math.round(value).toLocaleString();
}
function fmtPercent(value) {
  if (value === null || value === undefined) return "–";
  return `${(value * 100).toFixed(value < 0.01 && value > 0 ? 2 : 1)}%`;
}
function fmtMs(value) {
  if (value === null || value === undefined) return "–";
  return value < 10 ? value.toFixed(2) : value.toFixed(1);
}
// "CUDAExecutionProvider" -> "GPU (CUDA)": what an operator needs to know at a glance.
function fmtProvider(provider) {
  if (!provider) return "–";
  const name = provider.replace(/ExecutionProvider$/, "");
  return name === "CPU" ? "CPU" : `GPU (${name})`;
}
function setText(el, text) {
  if (el && el.textContent !== text) el.textContent = text;
}

// --- connection status --------------------------------------------------------------------

function setState(state, text) {
  live.state = state;
  body.dataset.liveState = state;
  if (statusEl) {
    statusEl.dataset.state = state;
    setText(statusEl, text);
  }
}

// --- charts (uPlot) -----------------------------------------------------------------------

const charts = {};
window.phoenixCharts = charts;

function makeChart(id, series, opts = {}) {
  const el = document.getElementById(id);
  if (!el || !window.uPlot) return null;
  const width = () => Math.max(260, el.clientWidth);
  const palette = ["#1c7ed6", "#e67700", "#c92a2a", "#2b8a3e", "#7048e8"];
  const plot = new uPlot(
    {
      width: width(),
      height: 220,
      cursor: { drag: { x: false, y: false } },
      legend: { live: false },
      scales: { x: opts.xRange ? { time: false, range: opts.xRange } : { time: opts.time !== false }, y: { range: (u, min, max) => [0, Math.max(max, opts.minMax || 1)] } },
      axes: opts.axes || [{}, { size: 50 }],
      series: [
        {},
        ...series.map((s, i) => ({
          label: s.label,
          stroke: s.color || palette[i % palette.length],
          fill: s.fill,
          width: 2,
          dash: s.dash,
          spanGaps: s.spanGaps,
          paths: s.paths,
          points: { show: s.points === true },
        })),
      ],
    },
    [[], ...series.map(() => [])],
    el,
  );
  const chart = { plot, el, data: [[], ...series.map(() => [])] };
  new ResizeObserver(() => plot.setSize({ width: width(), height: 220 })).observe(el);
  charts[id] = chart;
  return chart;
}

function pushPoint(chart, ts, values) {
  if (!chart) return;
  chart.data[0].push(ts);
  values.forEach((v, i) => chart.data[i + 1].push(v === undefined ? null : v));
  if (chart.data[0].length > MAX_POINTS) chart.data.forEach((column) => column.shift());
  chart.plot.setData(chart.data);
  chart.el.dataset.points = String(chart.data[0].length);
}

// --- rendering a snapshot -----------------------------------------------------------------

function fillFields(root, stats) {
  if (!root || !stats) return;
  const latency = stats.latency_ms || {};
  const values = {
    rps: fmtNumber(stats.rps, 1),
    requests_total: fmtCount(stats.requests_total),
    error_rate: fmtPercent(stats.error_rate),
    p50: fmtMs(latency.p50),
    p95: fmtMs(latency.p95),
    p99: fmtMs(latency.p99),
    provider: stats.provider ? fmtProvider(stats.provider) : (stats.providers || []).map(fmtProvider).join(", ") || "–",
  };
  for (const [field, text] of Object.entries(values)) {
    root.querySelectorAll(`[data-field="${field}"]`).forEach((el) => setText(el, text));
  }
}

function renderOverview(snapshot) {
  const totals = snapshot.totals || {};
  setText(document.querySelector('[data-total="rps"]'), fmtNumber(totals.rps, 1));
  setText(document.querySelector('[data-total="requests_total"]'), fmtCount(totals.requests_total));
  setText(document.querySelector('[data-total="error_rate"]'), fmtPercent(totals.error_rate));
  let slowest = null;
  for (const row of document.querySelectorAll("#models-table tr[data-model]")) {
    const stats = (snapshot.models || {})[row.dataset.model];
    if (!stats) continue;
    fillFields(row, stats);
    // Routes are labelled "<policy>:<arm>"; the policy is already shown beside them.
    const routes = Object.entries(stats.routes || {})
      .filter(([, share]) => share !== null)
      .map(([route, share]) => `${route.split(":").pop()} ${Math.round(share * 100)}%`)
      .join(" · ");
    setText(row.querySelector('[data-field="routes"]'), routes ? `live: ${routes}` : "");
    const p99 = stats.latency_ms && stats.latency_ms.p99;
    if (p99 !== null && p99 !== undefined) slowest = Math.max(slowest || 0, p99);
  }
  pushPoint(charts["chart-rps"], snapshot.ts, [totals.rps]);
  pushPoint(charts["chart-p99"], snapshot.ts, [slowest]);
}

function renderModel(snapshot) {
  const root = document.getElementById("model-root");
  const name = root && root.dataset.model;
  const stats = (snapshot.models || {})[name];
  const latency = (stats && stats.latency_ms) || {};
  pushPoint(charts["chart-latency"], snapshot.ts, [latency.p50, latency.p95, latency.p99]);
  pushPoint(charts["chart-throughput"], snapshot.ts, [stats ? stats.rps : 0]);
  if (!stats) return;
  for (const arm of document.querySelectorAll(".arm[data-version]")) {
    fillFields(arm, (stats.versions || {})[arm.dataset.version]);
  }
  renderConfidence(stats.confidence);
}

function renderConfidence(confidence) {
  const chart = charts["chart-confidence"];
  if (!chart || !confidence) return;
  // One bar per bucket, evenly spaced: the buckets are narrow near 1 and wide below.
  const labels = [];
  const counts = [];
  let lower = 0;
  confidence.bounds.forEach((le, i) => {
    const finite = le !== null && Number.isFinite(le);
    if (!finite && !confidence.counts[i]) return;
    labels.push(finite ? `≤${le}` : `>${lower}`);
    counts.push(confidence.counts[i]);
    if (finite) lower = le;
  });
  chart.labels = labels;
  chart.data = [labels.map((_, i) => i), counts];
  chart.plot.setData(chart.data);
  chart.el.dataset.points = String(labels.length);
}

function renderExperiments(snapshot) {
  for (const card of document.querySelectorAll(".experiment[data-model]")) {
    const stats = (snapshot.models || {})[card.dataset.model];
    if (!stats) continue;
    for (const row of card.querySelectorAll("tr[data-version]")) {
      fillFields(row, (stats.versions || {})[row.dataset.version]);
    }
  }
}

function renderPipeline(snapshot) {
  const table = document.getElementById("pipeline-table");
  if (!table) return;
  const body = table.querySelector("tbody");
  for (const [key, value] of Object.entries(snapshot.pipeline || {})) {
    let row = body.querySelector(`tr[data-series="${CSS.escape(key)}"]`);
    if (!row) {
      const empty = body.querySelector("tr.empty");
      if (empty) empty.remove();
      row = document.createElement("tr");
      row.dataset.series = key;
      row.innerHTML = '<td><code></code></td><td class="num" data-field="value"></td><td class="muted small"></td>';
      row.querySelector("code").textContent = key;
      body.appendChild(row);
    }
    setText(row.querySelector('[data-field="value"]'), fmtNumber(value, 3));
  }
}

function renderSnapshot(snapshot) {
  live.snapshots += 1;
  live.last = snapshot;
  if (page === "overview") renderOverview(snapshot);
  else if (page === "model") renderModel(snapshot);
  else if (page === "experiments") renderExperiments(snapshot);
  else if (page === "pipeline") renderPipeline(snapshot);
}

// --- performance from labels (model page) -------------------------------------------------

const PERFORMANCE_MAX_POINTS = 200;
const performance = { series: [] };
window.phoenixPerformance = performance;

// One x column (window ends, epoch seconds) for every version; a version with no check at
// a time has a gap there. Per version: its metric, then its holdout value as a flat line.
function performanceColumns() {
  const times = [...new Set(performance.series.flatMap((s) => s.points.map((p) => p.t)))].sort((a, b) => a - b);
  const columns = [times];
  for (const s of performance.series) {
    const byTime = new Map(s.points.map((p) => [p.t, p[s.metric] === undefined ? null : p[s.metric]]));
    columns.push(times.map((t) => (byTime.has(t) ? byTime.get(t) : null)));
    columns.push(times.map(() => (s.holdout === null || s.holdout === undefined ? null : s.holdout)));
  }
  return columns;
}

function renderPerformance() {
  const chart = charts["chart-performance"];
  if (!chart) return;
  chart.data = performanceColumns();
  chart.plot.setData(chart.data);
  chart.el.dataset.points = performance.series.map((s) => s.points.length).join(",");
}

function setupPerformance() {
  const source = document.getElementById("performance-data");
  if (!source) return;
  try {
    performance.series = JSON.parse(source.textContent).series || [];
  } catch {
    return;
  }
  if (!performance.series.length) return;
  const palette = ["#1c7ed6", "#e67700", "#2b8a3e", "#7048e8"];
  const lines = performance.series.flatMap((s, i) => [
    { label: `v${s.version} ${s.metric}`, color: palette[i % palette.length], spanGaps: true, points: true },
    { label: `v${s.version} holdout`, color: palette[i % palette.length], dash: [6, 4] },
  ]);
  makeChart("chart-performance", lines);
  renderPerformance();
}

function performanceEvent(event) {
  const root = document.getElementById("model-root");
  if (!root || event.model !== root.dataset.model) return;
  const series = performance.series.find((s) => s.version === String(event.version));
  if (!series) return;
  series.points.push({
    t: Date.parse(event.window_end) / 1000,
    status: event.status,
    labelled: event.labelled,
    labelled_share: event.labelled_share,
    ...(event.metrics || {}),
  });
  if (series.points.length > PERFORMANCE_MAX_POINTS) series.points.shift();
  renderPerformance();
}

// --- why this prediction (model page) -----------------------------------------------------

const explainState = { last: null, error: null };
window.phoenixExplain = explainState;

function fmtAttribution(value) {
  const abs = Math.abs(value);
  const text = abs !== 0 && (abs < 1e-3 || abs >= 1e4) ? value.toExponential(2) : value.toFixed(4);
  return value > 0 ? `+${text}` : text;
}

function renderExplanation(target, answer) {
  target.innerHTML = "";
  const head = document.createElement("p");
  const actual = answer.actual !== null && answer.actual !== undefined ? ` (actual ${JSON.stringify(answer.actual)})` : "";
  head.textContent = `v${answer.version} predicted ${JSON.stringify(answer.prediction)}${actual}. ` +
    `Explained: ${answer.explained}, ${fmtNumber(answer.value, 4)} = baseline ${fmtNumber(answer.baseline, 4)} + the attributions below.`;
  const method = document.createElement("p");
  method.className = "muted small";
  const coalitions = answer.coalitions ? `, ${answer.coalitions} coalitions` : "";
  method.textContent = `${answer.method}${coalitions}; they add up within ${answer.tolerance}.`;
  const list = document.createElement("ul");
  list.className = "attributions";
  const largest = Math.max(1e-12, ...answer.attributions.map((a) => Math.abs(a.attribution)));
  for (const { feature, attribution } of answer.attributions) {
    const item = document.createElement("li");
    item.dataset.feature = feature;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = feature;
    name.title = feature;
    const track = document.createElement("span");
    track.className = "track";
    const bar = document.createElement("span");
    bar.className = `bar ${attribution >= 0 ? "up" : "down"}`;
    bar.style.width = `${(Math.abs(attribution) / largest) * 50}%`;
    track.appendChild(bar);
    const value = document.createElement("span");
    value.className = "num";
    value.textContent = fmtAttribution(attribution);
    item.append(name, track, value);
    list.appendChild(item);
  }
  target.append(head, method, list);
}

function setupExplainPanel() {
  const panel = document.getElementById("explain-panel");
  const target = document.getElementById("explanation");
  if (!panel || !target) return;
  panel.addEventListener("click", async (click) => {
    const button = click.target.closest("button.explain");
    if (!button) return;
    for (const row of panel.querySelectorAll("tr.selected")) row.classList.remove("selected");
    const row = button.closest("tr");
    if (row) row.classList.add("selected");
    target.textContent = "Explaining…";
    try {
      const response = await fetch(`${panel.dataset.explainUrl}${button.dataset.rowId}/explain/`, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const answer = await response.json();
      if (!response.ok) {
        explainState.error = answer.error || { message: `HTTP ${response.status}` };
        target.textContent = `Cannot explain this prediction: ${explainState.error.message}`;
        return;
      }
      explainState.last = answer;
      explainState.error = null;
      renderExplanation(target, answer);
    } catch (error) {
      explainState.error = { message: String(error) };
      target.textContent = "Cannot explain this prediction now; try again.";
    }
  });
}

// --- events -------------------------------------------------------------------------------

function describe(event) {
  if (event.message) return event.message;
  const who = event.model ? `${event.model}${event.version ? ` v${event.version}` : ""}` : "";
  switch (event.kind) {
    case "drift": {
      const drifted = (event.drifted_features || []).join(", ");
      return `${who}: ${event.status === "drift" ? "drift detected" : `drift check ${event.status || ""}`}${drifted ? ` in ${drifted}` : ""}`;
    }
    case "stage":
      return `${who}: ${event.from_value || event.from || "?"} → ${event.to_value || event.to || "?"}${event.actor ? ` by ${event.actor}` : ""}`;
    case "rollback":
      return `${who}: challenger rolled back`;
    case "performance": {
      const worse = (event.degraded_metrics || []).join(", ");
      return `${who}: performance ${event.status === "degraded" ? `dropped (${worse})` : event.status || ""}, ${event.labelled ?? 0} labels`;
    }
    default: {
      const move = event.from_value || event.to_value ? ` ${event.from_value || "–"} → ${event.to_value || "–"}` : "";
      return `${who}: ${event.action || event.kind}${move}${event.actor ? ` by ${event.actor}` : ""}`;
    }
  }
}

// The experiments page re-reads its experiments from the server when one changed: the
// numbers are the server's (the same as admin and REST), never recomputed here. The
// per-arm live cells are filled again by the next snapshot (within a second).
const EXPERIMENT_EVENTS = new Set(["experiment", "experiment_look", "rollback"]);
let experimentRefresh = null;

function refreshExperiments() {
  if (experimentRefresh) return;
  experimentRefresh = setTimeout(async () => {
    experimentRefresh = null;
    try {
      const response = await fetch(location.pathname, { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      const block = fresh.getElementById("experiments-live");
      const shown = document.getElementById("experiments-live");
      if (block && shown) shown.replaceWith(document.importNode(block, true));
    } catch {
      // the next event or a reload brings it
    }
  }, 250);
}

function renderEvent(event) {
  if (page === "experiments" && EXPERIMENT_EVENTS.has(event.kind)) refreshExperiments();
  if (page === "model" && event.kind === "performance") performanceEvent(event);
  if (event.kind === "experiment_look") return; // numbers, not news: no line in the list
  live.events += 1;
  const list = document.getElementById("events");
  if (list) {
    const placeholder = list.querySelector(".placeholder");
    if (placeholder) placeholder.remove();
    const item = document.createElement("li");
    item.className = `event event-${event.kind}`;
    const time = document.createElement("time");
    time.textContent = new Date(event.at || Date.now()).toLocaleTimeString();
    const kind = document.createElement("span");
    kind.className = "kind";
    kind.textContent = event.kind;
    item.append(time, kind, document.createTextNode(describe(event)));
    list.prepend(item);
    while (list.children.length > 100) list.lastElementChild.remove();
  }
  if (event.kind === "drift" && event.model && event.status) {
    const cell = document.querySelector(`#models-table tr[data-model="${CSS.escape(event.model)}"] [data-field="drift"]`);
    if (cell) {
      cell.innerHTML = "";
      const badge = document.createElement("span");
      badge.className = `badge drift-${event.status}`;
      badge.textContent = event.status === "drift" ? "Drift detected" : event.status === "ok" ? "No drift" : event.status;
      cell.appendChild(badge);
      cell.classList.add("flash");
    }
  }
  if (event.kind === "stage" && event.version && (event.to_value || event.to)) {
    const cell = document.querySelector(`#versions-table tr[data-version="${CSS.escape(String(event.version))}"] [data-field="stage"]`);
    if (cell) {
      const stage = event.to_value || event.to;
      cell.innerHTML = "";
      const badge = document.createElement("span");
      badge.className = `badge stage-${stage}`;
      badge.textContent = stage;
      cell.appendChild(badge);
      cell.classList.add("flash");
    }
  }
}

// --- socket with reconnect ----------------------------------------------------------------

function connect(path) {
  let attempt = 0;
  let timer = null;
  let countdown = null;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;

  const open = () => {
    clearInterval(countdown);
    setState(attempt === 0 ? "connecting" : "reconnecting", attempt === 0 ? "connecting…" : "reconnecting…");
    const socket = new WebSocket(url);
    window.phoenixSocket = socket;
    socket.onopen = () => {
      attempt = 0;
      live.connects += 1;
      setState("open", "live");
    };
    socket.onmessage = (message) => {
      let payload;
      try { payload = JSON.parse(message.data); } catch { return; }
      if (payload.type === "snapshot") renderSnapshot(payload.data);
      else if (payload.type === "event") renderEvent(payload.data);
    };
    socket.onclose = (closed) => {
      if (closed.code === CLOSE_UNAUTHENTICATED) {
        setState("closed", "signed out");
        window.location.assign(body.dataset.loginUrl || "/accounts/login/");
        return;
      }
      if (closed.code === CLOSE_FORBIDDEN || closed.code === CLOSE_UNKNOWN_MODEL) {
        setState("closed", closed.code === CLOSE_FORBIDDEN ? "not allowed" : "unknown model");
        return;
      }
      // Exponential backoff with jitter, so a restarted server is not stampeded.
      attempt += 1;
      const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (attempt - 1)) * (0.75 + Math.random() * 0.5);
      const due = Date.now() + delay;
      const tick = () => setState("reconnecting", `reconnecting in ${Math.max(0, Math.ceil((due - Date.now()) / 1000))} s…`);
      tick();
      countdown = setInterval(tick, 250);
      clearTimeout(timer);
      timer = setTimeout(open, delay);
    };
  };
  // A phone that wakes from sleep should not wait out a long backoff.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && live.state === "reconnecting") {
      clearTimeout(timer);
      open();
    }
  });
  open();
}

// --- page setup ---------------------------------------------------------------------------

function setup() {
  if (page === "overview") {
    makeChart("chart-rps", [{ label: "req/s", fill: "rgba(28,126,214,.12)" }]);
    makeChart("chart-p99", [{ label: "p99 ms", color: "#c92a2a" }]);
  } else if (page === "model") {
    makeChart("chart-latency", [
      { label: "p50", color: "#2b8a3e" },
      { label: "p95", color: "#e67700" },
      { label: "p99", color: "#c92a2a" },
    ]);
    makeChart("chart-throughput", [{ label: "req/s", fill: "rgba(28,126,214,.12)" }]);
    setupPerformance();
    setupExplainPanel();
    const confidence = makeChart(
      "chart-confidence",
      [{ label: "predictions", fill: "rgba(112,72,232,.45)", color: "#7048e8", paths: window.uPlot && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.7, 80] }) : undefined }],
      {
        time: false,
        xRange: (u, min, max) => [min - 0.5, max + 0.5],
        axes: [
          { label: "confidence", space: 10, incrs: [1], values: (u, splits) => splits.map((i) => (confidence && confidence.labels ? confidence.labels[i] || "" : "")), rotate: -45, size: 56 },
          { size: 50 },
        ],
      },
    );
  }
  const path = body.dataset.wsPath;
  if (path) connect(path);
}

setup();
