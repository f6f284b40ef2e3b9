// The tiergate control panel: polls /ui/api/state and renders it. No dependencies.
// Data goes into the DOM as text only (textContent): tenant and task names are client input.
"use strict";

const POLL_MS = 2000;
const HISTORY = 90; // samples kept for the trend charts: 3 minutes at 2 s
const history = [];

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const dash = "–";
const int = (n) => String(Math.round(n));
const ms = (x) => (x === null || x === undefined ? dash : x < 10 ? x.toFixed(1) : x.toFixed(0));
const pct = (x) => (x * 100).toFixed(1) + "%";
const usd = (x) => (x >= 1 ? x.toFixed(2) : x.toFixed(6));
const clock = (ts) => new Date(ts * 1000).toLocaleTimeString([], { hour12: false });

function uptime(s) {
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}

// A table cell whose raw figure is in data-value (what tests compare), its text for people.
function cell(field, value, text, cls) {
  return el("td", { "data-field": field, "data-value": value, class: cls }, text === undefined ? value : text);
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows);
  if (!rows.length) {
    const span = document.querySelectorAll(`#${tableId} thead th`).length;
    body.append(el("tr", {}, el("td", { colspan: span, class: "empty" }, "nothing yet")));
  }
}

function sparkline(values, label) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 120 32");
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  const max = Math.max(...values, 0);
  const title = document.createElementNS(ns, "title");
  title.textContent = `${label}: last ${values.length} samples, peak ${max.toPrecision(3)}`;
  svg.append(title);
  if (values.length > 1) {
    const points = values.map((v, i) => {
      const x = (i / (values.length - 1)) * 120;
      const y = 30 - (max > 0 ? (v / max) * 28 : 0);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.append(line);
  }
  return svg;
}

// Per-second rates between successive polls of a cumulative total.
function rates(key) {
  const out = [];
  for (let i = 1; i < history.length; i++) {
    const dt = history[i].t - history[i - 1].t;
    out.push(dt > 0 ? Math.max(history[i][key] - history[i - 1][key], 0) / dt : 0);
  }
  return out;
}

function card(field, label, value, text, trend, trendLabel) {
  return el(
    "div",
    { class: "card" },
    el("h3", {}, label),
    el("p", { class: "figure", "data-field": field, "data-value": value }, text),
    trend ? sparkline(trend, trendLabel) : ""
  );
}

function renderCards(state) {
  const t = state.totals;
  document.getElementById("cards").replaceChildren(
    card("totals.requests", "Requests", t.requests, int(t.requests), rates("requests"), "requests per second"),
    card("totals.errors", "Failed requests", t.errors, int(t.errors), rates("errors"), "failures per second"),
    card("totals.fallbacks", "Fallbacks", t.fallbacks, int(t.fallbacks), rates("fallbacks"), "fallbacks per second"),
    card("totals.cost_usd", "Cost $", t.cost_usd, usd(t.cost_usd), rates("cost").map((r) => r * 60), "dollars per minute"),
    card("totals.limit_rejections", "Limit rejections", t.limit_rejections, int(t.limit_rejections)),
    card("in_flight", "In flight", state.in_flight, int(state.in_flight))
  );
}

function renderModels(models) {
  fill("models", models.map((m) => {
    const f = (k) => `model.${m.name}.${k}`;
    const attempts = Object.values(m.attempts).reduce((a, b) => a + b, 0);
    const failed = attempts - (m.attempts.ok || 0);
    const worker = m.worker ? `${m.worker}, ${m.worker_restarts} restart${m.worker_restarts === 1 ? "" : "s"}` : dash;
    const workerCell = cell(f("worker"), m.worker || "", worker, m.worker && m.worker !== "up" ? "bad" : "");
    if (m.worker_error) workerCell.append(el("br"), el("small", {}, m.worker_error));
    return el(
      "tr",
      {},
      el("th", { scope: "row" }, m.name),
      cell(f("provider"), m.provider),
      cell(f("on_device"), m.on_device, m.on_device ? "yes" : "no"),
      cell(f("breaker"), m.breaker, m.breaker.replace("_", " "), `breaker breaker-${m.breaker}`),
      cell(f("ttft_ms"), m.ttft_ms, ms(m.ttft_ms)),
      cell(f("tokens_per_s"), m.tokens_per_s, m.tokens_per_s.toFixed(1)),
      cell(f("samples"), m.samples),
      cell(f("queue"), m.queue, m.on_device ? int(m.queue) : dash),
      workerCell,
      cell(f("served"), m.served, int(m.served)),
      cell(f("failed_attempts"), failed, attempts ? `${int(failed)} of ${int(attempts)}` : dash, failed ? "bad" : ""),
      cell(f("cost_usd"), m.cost_usd, usd(m.cost_usd))
    );
  }));
}

function split(route) {
  const total = Object.values(route.by_model).reduce((a, b) => a + b, 0);
  const bar = el("div", { class: "split", "aria-hidden": "true" });
  const names = Object.keys(route.by_model).sort();
  names.forEach((name, i) => {
    const share = total ? route.by_model[name] / total : 0;
    bar.append(el("span", { class: `seg seg${i % 6}`, style: null, title: name }));
    bar.lastChild.style.width = `${(share * 100).toFixed(1)}%`;
  });
  const text = names.map((n) => `${n} ${int(route.by_model[n])}`).join(" · ") || dash;
  const td = el("td", { "data-field": `route.${route.name}.by_model`, "data-value": JSON.stringify(route.by_model) }, bar, el("span", {}, text));
  return td;
}

function cacheCell(field, cache) {
  if (!cache || cache.hit_rate === null) return cell(field, "", dash);
  const kinds = Object.keys(cache.hits).sort().map((k) => `${k} ${int(cache.hits[k])}`).join(" · ");
  const td = cell(field, cache.hit_rate, pct(cache.hit_rate));
  if (kinds) td.append(el("small", {}, ` ${kinds}`));
  return td;
}

function renderRoutes(routes) {
  fill("routes", routes.map((r) => {
    const f = (k) => `route.${r.name}.${k}`;
    const name = el("th", { scope: "row" }, r.name);
    if (r.configured) name.append(el("small", {}, ` ${r.objective}: ${r.chain.join(" → ")}`));
    return el(
      "tr",
      {},
      name,
      cell(f("requests"), r.requests, int(r.requests)),
      cell(f("errors"), r.errors, int(r.errors), r.errors ? "bad" : ""),
      split(r),
      cell(f("fallback_rate"), r.fallback_rate, pct(r.fallback_rate), r.fallback_rate > 0.1 ? "bad" : ""),
      cell(f("hedge_rate"), r.hedge_rate, pct(r.hedge_rate)),
      cell(f("p50_ms"), r.p50_ms, ms(r.p50_ms)),
      cell(f("p99_ms"), r.p99_ms, ms(r.p99_ms)),
      cacheCell(f("cache_hit_rate"), r.cache),
      cell(f("cost_usd"), r.cost_usd, usd(r.cost_usd))
    );
  }));
}

function budget(field, spent, limit) {
  if (limit === null) return cell(field, "", dash);
  if (spent === null) return cell(field, "", `? / ${usd(limit)}`);
  const td = cell(field, spent, `${usd(spent)} / ${usd(limit)}`, spent >= limit ? "bad" : "");
  td.prepend(el("meter", { min: 0, max: limit, value: Math.min(spent, limit), high: limit * 0.8, optimum: 0 }), " ");
  return td;
}

function renderTenants(tenants) {
  fill("tenants", tenants.map((t) => {
    const f = (k) => `tenant.${t.tenant}.${k}`;
    return el(
      "tr",
      {},
      el("th", { scope: "row" }, t.tenant),
      cell(f("requests"), t.requests),
      cell(f("cost_usd"), t.cost_usd, usd(t.cost_usd)),
      budget(f("day"), t.spent_day_usd, t.usd_per_day),
      budget(f("month"), t.spent_month_usd, t.usd_per_month)
    );
  }));
}

function renderDecisions(decisions) {
  fill("decisions", decisions.map((d, i) => {
    const f = (k) => `decision.${i}.${k}`;
    const attempts = (d.attempts || []).map((a) => `${a.model} ${a.outcome}${a.hedged ? " (hedge)" : ""}`).join(" → ");
    const outcome = d.limit ? `${d.outcome}: ${d.limit}` : d.outcome;
    const route = cell(f("route"), d.route);
    if (d.sensitivity === "internal" || d.sensitivity === "restricted") route.append(el("small", { "data-field": f("sensitivity") }, ` ${d.sensitivity}`));
    return el(
      "tr",
      {},
      el("td", {}, clock(d.ts)),
      route,
      cell(f("tenant"), d.tenant, d.tenant || dash),
      cell(f("outcome"), d.outcome, outcome, d.outcome === "ok" ? "good" : "bad"),
      cell(f("served_by"), d.served_by || "", d.served_by || dash),
      cell(f("attempts"), (d.attempts || []).length, attempts || dash),
      cell(f("reason"), d.reason || "", d.reason || dash),
      cell(f("rules"), (d.matched_rules || []).join(","), (d.matched_rules || []).join(", ") || dash),
      cell(f("cost_usd"), d.cost_usd, usd(d.cost_usd)),
      cell(f("latency_ms"), d.latency_ms, ms(d.latency_ms)),
      cell(f("overhead_ms"), d.overhead_ms, d.overhead_ms === undefined ? dash : d.overhead_ms.toFixed(2))
    );
  }));
}

function renderConfig(config) {
  const last = config.last_reload;
  const rows = [
    ["file", config.file || "the embedded default (no file)"],
    ["models · routes · rules · budgets", `${config.models} · ${config.routes} · ${config.rules} · ${config.budgets}`],
    ["limits state", config.state],
    ["last load", `${new Date(last.at * 1000).toLocaleString()}: ${last.result}${last.detail ? " — " + last.detail : ""}`],
    ["reloads", `${int(config.reloads_ok)} ok, ${int(config.reloads_rejected)} rejected`],
  ];
  const dl = document.getElementById("config");
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": `config.${k}` }, v)]));
  dl.lastChild.previousSibling.previousSibling.className = last.result === "ok" ? "" : "bad";
}

function render(state) {
  const t = state.totals;
  history.push({ t: state.generated_at, requests: t.requests, errors: t.errors, fallbacks: t.fallbacks, cost: t.cost_usd });
  if (history.length > HISTORY) history.shift();
  document.getElementById("summary").textContent =
    `tiergate ${state.version} · up ${uptime(state.uptime_s)} · ${state.in_flight} in flight · ` +
    `${state.ready ? "ready" : "not ready"}${state.auth ? " · token required" : ""}`;
  document.getElementById("logout").hidden = !state.auth;
  renderCards(state);
  renderModels(state.models);
  renderRoutes(state.routes);
  renderTenants(state.tenants);
  renderDecisions(state.decisions);
  renderConfig(state.config);
  document.getElementById("updated").textContent = `Last update ${clock(state.generated_at)}.`;
  document.body.dataset.rendered = String(history.length);
}

async function poll() {
  try {
    const response = await fetch("/ui/api/state", { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      window.location.assign("/ui/login");
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
  } catch (error) {
    document.getElementById("summary").textContent = `Cannot reach the sidecar (${error.message}); retrying…`;
  }
  setTimeout(poll, POLL_MS);
}

poll();
