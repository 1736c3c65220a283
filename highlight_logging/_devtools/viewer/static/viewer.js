// highlight-logging viewer: plain JavaScript, no build step, no network beyond this server.
// Every value that came from a log record is put on the page with textContent (through el()),
// never as HTML, and never as a link target: links are built from our own ids, inside "#/...".
"use strict";

const POLL_MS = 1000;
const PAGE = 100;
const MAX_ROWS = 2000;
const FOLD_CHARS = 400;
const FOLD_LINES = 4;
const LEVELS = ["", "TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
const HIDDEN_CHIPS = /^(exception\.|code\.|thread\.)/;

// route: bumped at every navigation, so a view's late answers never touch the view that replaced it.
const state = { live: true, timer: null, route: 0, view: "", params: {}, facets: null };

// ---- DOM helpers -------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

// A link inside the viewer: the target is always "#/" + our route and encoded parameters.
function link(route, params, text, attrs) {
  return el("a", Object.assign({ href: hashFor(route, params), text }, attrs || {}));
}

function hashFor(route, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== "" && value !== undefined && value !== null) query.set(key, String(value));
  }
  const q = query.toString();
  return "#/" + route.split("/").map(encodeURIComponent).join("/") + (q ? "?" + q : "");
}

function show(...nodes) {
  const main = document.getElementById("main");
  main.replaceChildren(...nodes);
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

function asText(value) {
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 1);
}

function nsToDate(ns) {
  return new Date(Number(ns) / 1e6);
}

function pad(n, w) {
  return String(n).padStart(w || 2, "0");
}

function fmtTime(ns) {
  if (!ns) return "-";
  const d = nsToDate(ns);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function fmtDateTime(ns) {
  if (!ns) return "-";
  const d = nsToDate(ns);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmtTime(ns)}`;
}

function fmtAgo(ns) {
  const s = Math.max(0, (Date.now() - Number(ns) / 1e6) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

function fmtDuration(ns) {
  if (ns === null || ns === undefined) return "";
  const ms = Number(ns) / 1e6;
  if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

async function api(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== "" && value !== undefined && value !== null) query.set(key, String(value));
  }
  const q = query.toString();
  const response = await fetch("/api/" + path + (q ? "?" + q : ""), { cache: "no-store" });
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

// A long body shows its first lines; a button unfolds it (and folds it again).
function foldable(text, cls) {
  const node = el("div", { class: cls, text });
  const long = text.length > FOLD_CHARS || text.split("\n").length > FOLD_LINES;
  if (!long) return node;
  node.classList.add("folded");
  const button = el("button", { type: "button", class: "fold", "aria-expanded": "false", text: "show all" });
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    const folded = node.classList.toggle("folded");
    button.textContent = folded ? "show all" : "fold";
    button.setAttribute("aria-expanded", String(!folded));
  });
  return el("div", { class: "foldbox" }, node, button);
}

function kvTable(obj, caption) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return el("p", { class: "meta", text: `no ${caption}` });
  const table = el("table", { class: "kv" }, el("caption", { class: "meta", text: caption }));
  for (const [key, value] of entries) {
    table.append(el("tr", {}, el("th", { scope: "row", text: key }), el("td", { text: asText(value) })));
  }
  return table;
}

// ---- routing -------------------------------------------------------------------------------------

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?", 2);
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = Object.fromEntries(new URLSearchParams(query || ""));
  return { parts, params };
}

function route() {
  stopPolling();
  state.route += 1;
  const { parts, params } = parseHash();
  const view = parts[0] || "logs";
  state.view = view;
  state.params = params;
  for (const name of ["logs", "errors", "requests"]) {
    const nav = document.getElementById("nav-" + name);
    const current = view === name || (name === "errors" && view === "error") || (name === "requests" && view === "trace");
    if (current) nav.setAttribute("aria-current", "page");
    else nav.removeAttribute("aria-current");
  }
  const views = { logs: logsView, errors: errorsView, error: () => errorView(parts[1]), requests: requestsView,
    trace: () => traceView(params), item: () => itemView(parts[1]) };
  (views[view] || logsView)(params).catch((err) => show(el("p", { class: "empty", text: "Error: " + err.message })));
}

// ---- Logs --------------------------------------------------------------------------------------

async function loadFacets() {
  try {
    state.facets = await api("facets");
  } catch (err) {
    state.facets = { services: [], scopes: [], levels: [] };
  }
  return state.facets;
}

function select(name, label, options, value) {
  const s = el("select", { name, id: "f-" + name });
  for (const [val, text] of options) s.append(el("option", { value: val, text, selected: val === value }));
  if (value && !options.some(([val]) => val === value)) s.append(el("option", { value, text: value, selected: true }));
  return el("label", { for: "f-" + name }, label, s);
}

function input(name, label, value, attrs) {
  return el("label", { for: "f-" + name }, label,
    el("input", Object.assign({ name, id: "f-" + name, value: value || "", autocomplete: "off" }, attrs || {})));
}

function logFilters(params) {
  const ranges = [["", "any time"], ["5m", "last 5 min"], ["15m", "last 15 min"], ["1h", "last hour"],
    ["24h", "last 24 h"], ["custom", "from … to …"]];
  const facets = state.facets || { services: [], scopes: [] };
  const form = el("form", { class: "filters", role: "search", "aria-label": "Filter logs" },
    select("level", "Level at least", LEVELS.map((l) => [l, l || "any"]), params.level || ""),
    select("service", "Service", [["", "any"], ...facets.services.map((s) => [s, s || "(none)"])], params.service || ""),
    select("scope", "Logger", [["", "any"], ...facets.scopes.map((s) => [s, s || "(none)"])], params.scope || ""),
    input("q", "Text", params.q, { type: "search", placeholder: "message or attribute" }),
    input("trace", "Trace / request id", params.trace, { class: "id", placeholder: "trace id or highlight.trace_id" }),
    input("session", "Session id", params.session, { class: "id" }),
    select("range", "Time", ranges, params.range || ""),
  );
  if (params.range === "custom") {
    form.append(input("from", "From", params.from, { type: "datetime-local", step: "1" }),
      input("to", "To", params.to, { type: "datetime-local", step: "1" }));
  }
  const live = el("input", { type: "checkbox", id: "f-live", checked: state.live });
  live.addEventListener("change", () => setLive(live.checked));
  form.append(el("label", { class: "check", for: "f-live" }, live, "Live"),
    el("button", { type: "submit", text: "Apply" }),
    el("button", { type: "button", text: "Clear", onclick: () => { location.hash = "#/logs"; } }));
  const apply = () => {
    const data = Object.fromEntries(new FormData(form));
    if (data.range !== "custom") { delete data.from; delete data.to; }
    location.hash = hashFor("logs", data);
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
  for (const s of form.querySelectorAll("select")) s.addEventListener("change", apply);
  return form;
}

function logQuery(params) {
  const q = { level: params.level, service: params.service, scope: params.scope, q: params.q, trace: params.trace,
    session: params.session };
  const spans = { "5m": 300e3, "15m": 900e3, "1h": 3600e3, "24h": 86400e3 };
  if (spans[params.range]) q.since = Date.now() - spans[params.range];
  if (params.range === "custom") {
    if (params.from) q.since = new Date(params.from).getTime();
    if (params.to) q.until = new Date(params.to).getTime();
  }
  return q;
}

async function logsView(params) {
  const mine = state.route;
  const current = () => state.route === mine;
  await loadFacets();
  if (!current()) return;
  const list = el("ul", { class: "list", id: "log-list", "aria-label": "Log records, newest first" });
  const more = el("button", { type: "button", class: "more", text: "Load older", id: "load-older" });
  show(el("h2", { text: "Logs" }), logFilters(params), list, more);
  const query = logQuery(params);
  const data = await api("logs", Object.assign({ limit: PAGE }, query));
  if (!current()) return;
  let lastId = data.last_id;
  let oldestId = data.items.length ? data.items[data.items.length - 1].id : null;
  if (!data.items.length) list.append(el("li", { class: "empty", id: "no-rows", text: "No log records match (yet). New ones appear here live." }));
  for (const item of data.items) list.append(logRow(item));
  more.hidden = data.items.length < PAGE;
  more.addEventListener("click", async () => {
    const older = await api("logs", Object.assign({ limit: PAGE, before: oldestId }, query));
    for (const item of older.items) list.append(logRow(item));
    if (older.items.length) oldestId = older.items[older.items.length - 1].id;
    more.hidden = older.items.length < PAGE;
  });
  const tail = async () => {
    if (!state.live || state.view !== "logs") return;
    // A "last N minutes" window moves with the clock; a custom one stays.
    const fresh = await api("logs", Object.assign(logQuery(params), { after: lastId, limit: 500 }));
    if (!current()) return; // a filter changed meanwhile: these answer the old one
    if (fresh.items.length) {
      document.getElementById("no-rows")?.remove();
      lastId = Math.max(lastId, ...fresh.items.map((item) => item.id));
      const shown = new Set(Array.from(list.children, (row) => row.dataset.id));
      const rows = fresh.items.filter((item) => !shown.has(String(item.id))).map((item) => logRow(item, true));
      list.prepend(...rows);
      while (list.children.length > MAX_ROWS) list.lastChild.remove();
    }
  };
  startPolling(tail);
}

function logRow(item, isNew) {
  const attrs = item.attributes || {};
  const chips = Object.entries(attrs).filter(([k]) => !HIDDEN_CHIPS.test(k)).slice(0, 6)
    .map(([k, v]) => el("span", { class: "chip", text: `${k}=${asText(v)}` }));
  const line = el("div", { class: "line" },
    el("span", { class: "time", title: fmtDateTime(item.time_ns), text: fmtTime(item.time_ns) }),
    el("span", { class: "lvl " + levelClass(item), text: item.level || "-" }),
    el("span", { class: "svc", text: item.service }),
    item.scope ? el("span", { class: "scope", text: item.scope }) : null,
    item.group_id ? link("error/" + item.group_id, {}, "error", { class: "badge", title: "this error's group" }) : null,
  );
  let bodyText = item.body;
  if (item.body_truncated) bodyText += ` … (${item.body_truncated} characters; open the record for all)`;
  const row = el("li", { class: "row" + (isNew ? " new" : ""), tabindex: "0", "data-id": item.id, "aria-expanded": "false" },
    line, foldable(bodyText, "body"), chips.length ? el("div", { class: "chips" }, ...chips) : null);
  row.addEventListener("click", (event) => {
    if (event.target.closest("a, button, .detail")) return;
    toggleDetail(row, item.id);
  });
  return row;
}

function levelClass(item) {
  if (item.kind === "span") return item.status === "ERROR" ? "ERROR" : "SPAN";
  const s = item.severity || 0;
  return s >= 21 ? "FATAL" : s >= 17 ? "ERROR" : s >= 13 ? "WARN" : s >= 9 ? "INFO" : s >= 5 ? "DEBUG" : s >= 1 ? "TRACE" : "";
}

async function toggleDetail(row, id) {
  const open = row.querySelector(".detail");
  if (open) {
    open.remove();
    row.setAttribute("aria-expanded", "false");
    return;
  }
  row.setAttribute("aria-expanded", "true");
  const box = el("div", { class: "detail", text: "loading…" });
  row.append(box);
  try {
    const item = await api("item/" + id);
    box.replaceChildren(...detailNodes(item));
  } catch (err) {
    box.textContent = err.message;
  }
}

function relatedLinks(item) {
  const links = el("div", { class: "links" });
  if (item.group_id) links.append(link("error/" + item.group_id, {}, "Error group"));
  const req = item.request_id || item.trace_id;
  if (req) links.append(link("trace", { trace: req }, "Request (everything in it)"));
  if (item.session_id) links.append(link("trace", { session: item.session_id }, "Session"));
  if (item.trace_id) links.append(link("logs", { trace: item.trace_id }, "Logs of this trace"));
  links.append(link("item/" + item.id, {}, "Permalink"));
  return links;
}

function detailNodes(item) {
  const nodes = [relatedLinks(item)];
  const attrs = Object.assign({}, item.attributes);
  const stack = attrs["exception.stacktrace"];
  delete attrs["exception.stacktrace"];
  if (item.kind === "span") {
    nodes.push(kvTable({ name: item.body, kind: item.span_kind, status: item.status,
      "status message": item.status_message, duration: fmtDuration(item.duration_ns), trace_id: item.trace_id,
      span_id: item.span_id, parent_span_id: item.parent_id }, "span"));
  } else {
    nodes.push(el("h3", { text: "Message" }), foldable(item.body, "body"));
  }
  nodes.push(el("h3", { text: "Attributes" }), kvTable(attrs, "attributes"));
  if (typeof stack === "string") nodes.push(el("h3", { text: "Stack trace" }), el("pre", { text: stack }));
  for (const ev of item.events || []) {
    nodes.push(el("h3", { text: `Event: ${ev.name} at ${fmtTime(ev.time_ns)}` }), kvTable(ev.attributes, "event attributes"));
  }
  nodes.push(el("h3", { text: "Resource" }), kvTable(item.resource, "resource attributes"));
  nodes.push(el("p", { class: "meta", text: `${item.kind} #${item.id} · ${fmtDateTime(item.time_ns)} · trace ${item.trace_id || "-"} · span ${item.span_id || "-"}` }));
  return nodes;
}

async function itemView(id) {
  const item = await api("item/" + id);
  show(el("h2", { text: `${item.kind === "span" ? "Span" : "Log record"} #${item.id}` }),
    el("div", { class: "line" }, el("span", { class: "time", text: fmtDateTime(item.time_ns) }),
      el("span", { class: "lvl " + levelClass(item), text: item.level }), el("span", { class: "svc", text: item.service }),
      item.scope ? el("span", { class: "scope", text: item.scope }) : null),
    el("div", { class: "detail", id: "item-detail" }, ...detailNodes(item)));
}

// ---- Errors ------------------------------------------------------------------------------------

async function errorsView() {
  const data = await api("errors");
  const list = el("ul", { class: "list", id: "error-list", "aria-label": "Error groups, most recent first" });
  show(el("h2", { text: "Errors" }),
    el("p", { class: "meta", text: "Grouped by exception type, message pattern (numbers and ids replaced) and the innermost frame." }),
    list);
  if (!data.groups.length) list.append(el("li", { class: "empty", text: "No errors yet." }));
  for (const g of data.groups) list.append(groupRow(g));
  startPolling(async () => {
    if (state.view !== "errors" || !state.live) return;
    const fresh = await api("errors");
    const focused = document.activeElement?.dataset?.id;
    list.replaceChildren(...(fresh.groups.length ? fresh.groups.map(groupRow) : [el("li", { class: "empty", text: "No errors yet." })]));
    if (focused) list.querySelector(`[data-id="${CSS.escape(focused)}"]`)?.focus();
  }, 2000);
}

function groupRow(g) {
  const row = el("li", { class: "row group", tabindex: "0", "data-id": g.id },
    el("div", { class: "line" },
      el("span", { class: "count", text: `${g.count}×` }),
      el("span", { class: "type", text: g.type }),
      el("span", { class: "pattern", text: g.pattern })),
    el("div", { class: "line" },
      el("span", { class: "frame", text: g.frame || "(no stack trace)" }),
      el("span", { class: "meta", text: `first ${fmtAgo(g.first_ns)} · last ${fmtAgo(g.last_ns)} · ${g.services.join(", ")}`,
        title: `first ${fmtDateTime(g.first_ns)}, last ${fmtDateTime(g.last_ns)}` })));
  row.addEventListener("click", (event) => {
    if (!event.target.closest("a")) location.hash = hashFor("error/" + g.id);
  });
  return row;
}

async function errorView(id) {
  const g = await api("errors/" + id);
  const head = [
    el("h2", {}, el("span", { class: "type", text: g.type }), ": ", el("span", { class: "pattern", text: g.pattern })),
    el("p", { class: "frame", text: g.frame || "(no stack trace)" }),
    el("p", { class: "meta", text: `${g.count} occurrences · first seen ${fmtDateTime(g.first_ns)} · last seen ${fmtDateTime(g.last_ns)} · ${g.services.join(", ")}` }),
    el("div", { class: "links" }, link("errors", {}, "← all errors")),
    el("h3", { text: `Occurrences (newest ${g.occurrences.length})` }),
  ];
  const occs = g.occurrences.map((o, i) => occurrence(o, i === 0));
  show(el("div", { id: "error-group" }, ...head, ...occs));
}

function occurrence(o, open) {
  const links = el("div", { class: "links" });
  if (o.log_item) links.append(link("item/" + o.log_item, {}, "Log line"));
  if (o.span_item) links.append(link("item/" + o.span_item, {}, "Exception span"));
  const req = o.request_id || o.trace_id;
  if (req) links.append(link("trace", { trace: req }, "Request"));
  if (o.session_id) links.append(link("trace", { session: o.session_id }, "Session"));
  const frames = el("table", { class: "frames" },
    el("thead", {}, el("tr", {}, el("th", { text: "file" }), el("th", { text: "line" }), el("th", { text: "function" }), el("th", { text: "code" }))));
  const tbody = el("tbody");
  o.frames.forEach((f, i) => {
    tbody.append(el("tr", { class: i === o.frames.length - 1 ? "innermost" : null },
      el("td", { text: f.file }), el("td", { text: String(f.line) }), el("td", { text: f.function }), el("td", { class: "code", text: f.code })));
  });
  frames.append(tbody);
  return el("details", { class: "occ", open },
    el("summary", {}, el("span", { class: "time", text: fmtDateTime(o.time_ns) }), " ", el("span", { class: "svc", text: o.service }), " ",
      el("span", { class: "body", text: o.message })),
    links,
    o.frames.length ? frames : null,
    el("details", {}, el("summary", { text: "raw stack trace" }), el("pre", { text: o.stacktrace || "(none)" })));
}

// ---- Requests and traces -------------------------------------------------------------------------

async function requestsView() {
  const data = await api("requests");
  const form = el("form", { class: "filters", role: "search", "aria-label": "Open a request" },
    input("rtrace", "Trace id or highlight.trace_id", "", { class: "id" }),
    input("rsession", "or session id", "", { class: "id" }),
    el("button", { type: "submit", text: "Open" }));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const t = form.querySelector("#f-rtrace").value.trim();
    const s = form.querySelector("#f-rsession").value.trim();
    location.hash = hashFor("trace", s && !t ? { session: s } : { trace: t });
  });
  const list = el("ul", { class: "list", id: "request-list", "aria-label": "Requests, newest first" });
  show(el("h2", { text: "Requests and traces" }), form, list);
  if (!data.requests.length) list.append(el("li", { class: "empty", text: "No requests yet: records with a trace id or highlight.trace_id show here." }));
  for (const r of data.requests) {
    const row = el("li", { class: "row", tabindex: "0", "data-id": r.key },
      el("div", { class: "line" },
        el("span", { class: "time", text: fmtTime(r.start_ns), title: fmtDateTime(r.start_ns) }),
        el("span", { class: "lvl " + (r.level || ""), text: r.level || "-" }),
        el("span", { class: "body", text: r.name }),
        el("span", { class: "meta", text: r.key }),
        el("span", { class: "dur", text: fmtDuration(r.duration_ns) }),
        el("span", { class: "meta", text: `${r.count} records, ${r.spans} spans · ${r.services.join(", ")}` })));
    row.addEventListener("click", () => { location.hash = hashFor("trace", { trace: r.key }); });
    list.append(row);
  }
}

async function traceView(params) {
  const data = await api("trace", { trace: params.trace, session: params.session });
  const title = params.session ? `Session ${params.session}` : `Request ${params.trace}`;
  const items = data.items;
  const list = el("ul", { class: "list tl", id: "trace-list", "aria-label": "Everything in this request, in time order" });
  const start = items.length ? Math.min(...items.map((i) => Number(i.time_ns))) : 0;
  const end = items.length ? Math.max(...items.map((i) => Number(i.end_ns || i.time_ns))) : 0;
  const total = Math.max(end - start, 1);
  const errors = items.filter((i) => i.group_id).length;
  show(el("h2", { text: title }),
    el("p", { class: "meta", text: `${items.length} records · ${fmtDuration(end - start)} · ${errors} with errors · started ${fmtDateTime(start)}` }),
    el("div", { class: "links" }, link("requests", {}, "← all requests"),
      params.trace ? link("logs", { trace: params.trace }, "as logs (filterable)") : link("logs", { session: params.session }, "as logs (filterable)")),
    list);
  if (!items.length) list.append(el("li", { class: "empty", text: "Nothing with this id (it may have been dropped)." }));
  for (const item of items) {
    const offset = Number(item.time_ns) - start;
    const bar = item.kind === "span" && item.duration_ns !== null
      ? el("div", { class: "bar", title: fmtDuration(item.duration_ns) }, el("span"))
      : null;
    if (bar) {
      bar.firstChild.style.left = `${(100 * offset) / total}%`;
      bar.firstChild.style.width = `${Math.max(0.3, (100 * Number(item.duration_ns)) / total)}%`;
    }
    const row = el("li", { class: "row", tabindex: "0", "data-id": item.id, "aria-expanded": "false" },
      el("div", { class: "line" },
        el("span", { class: "offset", text: "+" + fmtDuration(offset) }),
        el("span", { class: "kind", text: item.kind === "span" ? "SPAN" : "LOG" }),
        el("span", { class: "lvl " + levelClass(item), text: item.kind === "span" ? item.status || "" : item.level }),
        el("span", { class: "svc", text: item.service }),
        item.scope ? el("span", { class: "scope", text: item.scope }) : null,
        item.kind === "span" ? el("span", { class: "dur", text: fmtDuration(item.duration_ns) }) : null,
        item.group_id ? link("error/" + item.group_id, {}, "error", { class: "badge" }) : null),
      foldable(item.body, "body"), bar);
    row.addEventListener("click", (event) => {
      if (event.target.closest("a, button, .detail")) return;
      toggleDetail(row, item.id);
    });
    list.append(row);
  }
}

// ---- live tail, status, keyboard -----------------------------------------------------------------

function startPolling(fn, ms) {
  stopPolling();
  const mine = state.route;
  const tick = async () => {
    try {
      await fn();
    } catch (err) {
      setStatus("viewer unreachable: " + err.message);
    }
    if (state.route === mine) state.timer = setTimeout(tick, ms || POLL_MS); // else the next view polls
  };
  state.timer = setTimeout(tick, ms || POLL_MS);
}

function stopPolling() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

function setLive(on) {
  state.live = on;
  const box = document.getElementById("f-live");
  if (box) box.checked = on;
  refreshStatus();
}

async function refreshStatus() {
  try {
    const s = await api("stats");
    setStatus(`${state.live ? "● live" : "❚❚ paused"} · ${s.logs} logs · ${s.spans} spans · ${s.errors} errors · keeps newest ${s.keep}`);
  } catch (err) {
    setStatus("viewer unreachable");
  }
}

function rows() {
  return Array.from(document.querySelectorAll("#main .row"));
}

function onKey(event) {
  const typing = event.target.closest("input, select, textarea");
  if (event.key === "Escape") {
    if (typing) { event.target.blur(); return; }
    const open = document.activeElement?.closest?.(".row");
    if (open?.querySelector(".detail")) toggleDetail(open, open.dataset.id);
    return;
  }
  if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
  const current = document.activeElement?.closest?.(".row");
  if (event.key === "/") {
    event.preventDefault();
    (document.getElementById("f-q") || document.getElementById("f-rtrace") || document.querySelector("#main input"))?.focus();
  } else if (event.key === "j" || event.key === "k" || (current && (event.key === "ArrowDown" || event.key === "ArrowUp"))) {
    event.preventDefault();
    const all = rows();
    if (!all.length) return;
    const i = current ? all.indexOf(current) : -1;
    const next = event.key === "j" || event.key === "ArrowDown" ? Math.min(all.length - 1, i + 1) : Math.max(0, i - 1);
    all[next].focus();
  } else if ((event.key === "Enter" || event.key === " ") && current && event.target === current) {
    event.preventDefault();
    current.click();
  } else if (event.key === "l") location.hash = "#/logs";
  else if (event.key === "e") location.hash = "#/errors";
  else if (event.key === "r") location.hash = "#/requests";
  else if (event.key === "p") setLive(!state.live);
}

window.addEventListener("hashchange", route);
document.addEventListener("keydown", onKey);
document.addEventListener("DOMContentLoaded", () => {
  route();
  refreshStatus();
  setInterval(refreshStatus, 2000);
});
