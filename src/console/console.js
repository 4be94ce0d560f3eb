// The tidegate web console: topics, records, a live tail, consumer groups and the cluster,
// with charts of traffic and lag, through the public HTTP API and WebSocket, with the token
// the user pastes. No framework and no build step: the binary serves this file as it is,
// beside the TypeScript client's browser bundle (clients/js, vendored as
// examples/browser/tidegate.js), which makes every call, and uPlot for the charts (vendored
// by scripts/vendor-pages); the page fetches nothing from any other origin.
//
// Server data reaches the page only as text: `h` appends strings as text nodes, and
// nothing here parses HTML.

import { Tidegate, TidegateError } from "/console/tidegate.js";
import uPlot from "/console/uPlot.esm.js";

// ---------------------------------------------------------------------------------------
// Elements

/** `h("a", {href: "#/x", onclick: f}, "text", child)`: attributes, listeners (function
 * values) and children (strings become text; null and false are skipped; arrays flatten). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (typeof value === "function") element.addEventListener(name.replace(/^on/, ""), value);
    else if (value === true) element.setAttribute(name, "");
    else if (value != null && value !== false) element.setAttribute(name, value);
  }
  element.append(...children.flat(Infinity).filter((child) => child != null && child !== false));
  return element;
}

function pageHeader({ title, crumb, subtitle }, ...actions) {
  document.title = `${title} · tidegate`;
  return h(
    "header",
    { class: "page-header" },
    h(
      "div",
      {},
      crumb && h("a", { class: "crumb", href: crumb[1] }, `← ${crumb[0]}`),
      h("h1", {}, title),
      subtitle && h("p", { class: "muted" }, subtitle),
    ),
    h("div", { class: "actions" }, actions),
  );
}

function card(title, extras, ...body) {
  return h(
    "section",
    { class: "card" },
    h("div", { class: "card-head" }, h("h2", {}, title), h("div", {}, extras)),
    body,
  );
}

function emptyCard(title, text) {
  return h("section", { class: "card" }, h("div", { class: "empty" }, h("strong", {}, title), h("p", {}, text)));
}

function stat(label, value, note) {
  return h(
    "div",
    { class: "stat" },
    h("span", { class: "stat-label" }, label),
    h("span", { class: "stat-value" }, value),
    note && h("span", { class: "hint" }, note),
  );
}

function badge(text, tone = "") {
  return h("span", { class: `badge ${tone}` }, text);
}

/** Columns are `[label, class]`; "num" right-aligns, "name" lets long names wrap. */
function table(columns, rows, footer) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, columns.map(([label, kind]) => h("th", { class: kind, scope: "col" }, label)))),
      h("tbody", {}, rows.map((cells) => row(columns, cells))),
      footer && h("tfoot", {}, row(columns, footer)),
    ),
  );
}

/** Cells of a row; `flagged(cells)` marks a row that needs attention (a short ISR). */
function row(columns, cells) {
  const tds = cells.map((cell, i) => h("td", { class: columns[i][1] }, cell));
  return h("tr", { class: cells.flagged && "flagged" }, tds);
}

const flagged = (cells) => Object.assign(cells, { flagged: true });

function chips(items) {
  if (items.length === 0) return muted("—");
  return h("span", { class: "chips" }, items.map((item) => h("span", { class: "chip" }, item)));
}

const muted = (text, title) => h("span", { class: "muted", title }, text);

function toast(message) {
  const note = h("div", { class: "toast" }, message);
  document.getElementById("toasts").append(note);
  setTimeout(() => note.remove(), 4000);
}

const topicHref = (name) => `#/topics/${encodeURIComponent(name)}`;
const tailHref = (name) => `#/tail/${encodeURIComponent(name)}`;
const groupHref = (name) => `#/groups/${encodeURIComponent(name)}`;

// ---------------------------------------------------------------------------------------
// Numbers and times

const numbers = new Intl.NumberFormat();
const count = (n) => numbers.format(n);

function bytes(n) {
  if (n == null) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let unit = 0;
  while (n >= 1024 && unit < units.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${unit ? n.toFixed(n < 10 ? 1 : 0) : n} ${units[unit]}`;
}

function duration(ms) {
  const units = [["d", 86_400_000], ["h", 3_600_000], ["min", 60_000], ["s", 1000]];
  const [name, size] = units.find(([, size]) => ms >= size) ?? ["ms", 1];
  return `${Number((ms / size).toFixed(1))} ${name}`;
}

const retentionTime = (ms) => (ms < 0 ? "forever" : duration(ms));
const retentionSize = (n) => (n < 0 ? "no size limit" : `${bytes(n)} per partition`);

/** Local wall-clock time to the millisecond, the way logs print it. */
function timestamp(ms) {
  const date = new Date(ms);
  const local = new Date(ms - date.getTimezoneOffset() * 60_000);
  return h("time", { datetime: date.toISOString() }, local.toISOString().slice(0, 23).replace("T", " "));
}

function ago(ms) {
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  const text =
    seconds < 60
      ? `${seconds} s ago`
      : seconds < 3600
        ? `${Math.floor(seconds / 60)} min ago`
        : `${Math.floor(seconds / 3600)} h ago`;
  return h("time", { datetime: new Date(ms).toISOString() }, text);
}

/** Records and bytes of a topic; `size` is null when the server does not report sizes. */
function totals(partitionOffsets) {
  const sum = (pick) => partitionOffsets.reduce((total, p) => total + pick(p), 0);
  return {
    records: sum((p) => p.high_watermark - p.log_start_offset),
    size: partitionOffsets.every((p) => p.size_bytes != null) ? sum((p) => p.size_bytes) : null,
  };
}

// ---------------------------------------------------------------------------------------
// Token

const TOKEN_KEY = "tidegate.token";

// sessionStorage: the token lives as long as the tab, and other tabs never see it.
const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY) ?? "",
  set: (value) => (value ? sessionStorage.setItem(TOKEN_KEY, value) : sessionStorage.removeItem(TOKEN_KEY)),
};

/** The token's claims, for showing whose it is; the server alone decides what it grants. */
function claims(jwt) {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(payload), (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

function showIdentity() {
  const jwt = token.get();
  const panel = document.getElementById("identity");
  if (!jwt) {
    panel.replaceChildren(
      h("span", { class: "who" }, "No token"),
      h("p", { class: "muted" }, "Requests go without one, as to a server run with ", h("code", {}, "--auth none")),
      h(
        "div",
        { class: "row" },
        h("button", { type: "button", class: "button small", onclick: openTokenDialog }, "Set token"),
      ),
    );
    return;
  }
  const claimed = claims(jwt) ?? {};
  const scopes = Array.isArray(claimed.scp) ? claimed.scp : String(claimed.scope ?? "").split(" ").filter(Boolean);
  const expired = typeof claimed.exp === "number" && claimed.exp * 1000 <= Date.now();
  panel.replaceChildren(
    h("span", { class: "who" }, String(claimed.sub ?? "Token set"), " ", expired && badge("expired", "danger")),
    scopes.length > 0 && h("div", { class: "scopes" }, scopes.map((scope) => h("code", {}, String(scope)))),
    h(
      "div",
      { class: "row" },
      h("button", { type: "button", class: "button small", onclick: openTokenDialog }, "Change"),
      h("button", { type: "button", class: "button small", onclick: signOut }, "Sign out"),
    ),
  );
}

function openTokenDialog() {
  formDialog({
    title: "Access token",
    intro:
      "Paste a JWT (tidegate token --scope admin prints one). It stays in this tab (sessionStorage) " +
      "and goes only to this server: as Authorization: Bearer, and as access_token on the WebSocket.",
    fields: [
      field("Token", textArea("token", { rows: 6 }, token.get())),
    ],
    submitLabel: "Save token",
    action: (elements) => {
      token.set(elements.token.value.trim());
      render();
    },
  });
}

function signOut() {
  token.set("");
  render();
}

// ---------------------------------------------------------------------------------------
// API

// A new client for every view: a changed token takes effect at once, and whatever the
// view left open (a socket, a long poll) closes with it. Two tries at most: a person
// looking at a page would rather see "Cannot reach tidegate" soon than wait out retries.
let tg = newClient();

function newClient() {
  return new Tidegate({ url: location.origin, getToken: () => token.get(), retry: { attempts: 2 } });
}

const STATUS_TITLES = {
  400: "Invalid request",
  404: "Not found",
  409: "Conflict",
  413: "Too large",
  415: "Unsupported content type",
  416: "Offset out of range",
  422: "Refused",
  429: "Too many requests",
  503: "Server unavailable",
};

// By code, not status: WebSocket errors carry the same codes and no status.
const CODE_TITLES = {
  missing_token: "Token missing, invalid or expired",
  invalid_token: "Token missing, invalid or expired",
  forbidden: "This token lacks the scope for this",
  offset_out_of_range: "Offset out of range",
  network_error: "Cannot reach tidegate",
  timeout: "tidegate did not answer in time",
};

const TOKEN_CODES = new Set(["missing_token", "invalid_token", "forbidden"]);

/** Any error (a `TidegateError`, a WebSocket error `{code, message}`, a bug) as an alert. */
function alertBox(error, tone = "") {
  const title = CODE_TITLES[error.code] ?? STATUS_TITLES[error.status] ?? "Request failed";
  return h(
    "div",
    { class: `alert ${tone}`, role: "alert" },
    h("strong", {}, title),
    h("p", {}, String(error.message), " ", error.code && h("code", { class: "muted" }, `(${error.code})`)),
    TOKEN_CODES.has(error.code) &&
      h("button", { type: "button", class: "button small", onclick: openTokenDialog }, "Set token"),
  );
}

// ---------------------------------------------------------------------------------------
// Waiting and refreshing

/** Resolves after `ms` with true, or with false as soon as the view goes away. */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve(false);
    const stop = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", stop);
      resolve(true);
    }, ms);
    signal.addEventListener("abort", stop, { once: true });
  });
}

/** Runs `redraw` every `ms` while the view is shown and the tab visible; a failed round
 * shows why in `region`, and the next round tries again. */
async function keepFresh(region, signal, ms, redraw) {
  while (await sleep(ms, signal)) {
    if (document.hidden) continue;
    try {
      await redraw();
    } catch (error) {
      if (!signal.aborted) region.replaceChildren(alertBox(error));
    }
  }
}

/** A page whose body `draw()` fetches and builds, now and every `ms`. A first failure
 * reaches the router, which shows it under the header. */
async function refreshingPage(main, signal, header, ms, draw) {
  const region = h("div", { class: "stack" });
  const redraw = async () => region.replaceChildren(...(await draw()));
  main.append(header, region);
  await redraw();
  keepFresh(region, signal, ms, redraw);
  return redraw;
}

/** `items.map(fn)` with at most `limit` calls in flight: one request per row without
 * flooding the server. */
async function mapLimit(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/** Each topic's description, null where it failed (a row then shows dashes). */
const describeAll = (topics, signal) =>
  mapLimit(topics, 6, (topic) => tg.describeTopic(topic.name, { signal }).catch(() => null));

// ---------------------------------------------------------------------------------------
// Charts

const CHART_HEIGHT = 180;
// Line colours, as CSS variables so that they follow the light or dark theme.
const PALETTE = ["--chart-1", "--chart-2", "--chart-3", "--chart-4", "--chart-5", "--chart-6"];

/** A CSS variable's value, for the canvas, which cannot read variables itself. */
const themeColor = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

/** A line chart over time (uPlot) with `unit` on its y axis and in its legend. `draw(times,
 * lines, summary)` shows new data: `times` in ms, `lines` as `[{label, values}]` (null
 * values leave a gap), `summary` as the caption, which says in words what the lines show. */
function lineChart(title, unit, signal) {
  const plotArea = h("div", { class: "chart-plot" });
  const caption = h("figcaption", { class: "muted" });
  const figure = h("figure", { class: "chart", "aria-label": title }, h("h3", {}, title), plotArea, caption);
  let plot;
  let labels;
  const width = () => Math.max(160, plotArea.clientWidth);
  const resized = new ResizeObserver(() => plot?.setSize({ width: width(), height: CHART_HEIGHT }));
  resized.observe(plotArea);
  signal.addEventListener("abort", () => {
    resized.disconnect();
    plot?.destroy();
  });
  const draw = (times, lines, summary) => {
    caption.textContent = summary;
    const data = [times.map((ms) => ms / 1000), ...lines.map((line) => line.values)];
    const key = lines.map((line) => line.label).join("\n");
    if (plot && key === labels) return plot.setData(data);
    // New lines (a partition appeared): a new chart, as uPlot's series are fixed.
    plot?.destroy();
    labels = key;
    plot = new uPlot(chartOptions(width(), lines, unit), data, plotArea);
  };
  return { figure, draw };
}

function chartOptions(width, lines, unit) {
  const axis = {
    stroke: themeColor("--muted"),
    grid: { stroke: themeColor("--border"), width: 1 },
    ticks: { stroke: themeColor("--border"), width: 1 },
    font: "11px system-ui, sans-serif",
  };
  return {
    width,
    height: CHART_HEIGHT,
    cursor: { drag: { x: false, y: false } },
    scales: { y: { range: (_plot, _min, max) => [0, niceMax(max)] } },
    axes: [
      { ...axis, values: (_plot, ticks) => timeTicks(ticks) },
      { ...axis, size: 64, values: (_plot, ticks) => ticks.map(unit) },
    ],
    series: [
      { label: "Time", value: (_plot, seconds) => (seconds == null ? "—" : clockTime(seconds * 1000)) },
      ...lines.map((line, i) => ({
        label: line.label,
        stroke: themeColor(PALETTE[i % PALETTE.length]),
        width: 2,
        points: { show: false },
        value: (_plot, value) => (value == null ? "—" : unit(value)),
      })),
    ],
  };
}

/** A y range that leaves room above the highest point, and 1 for a flat zero line. */
function niceMax(max) {
  if (!(max > 0)) return 1;
  const step = 10 ** Math.floor(Math.log10(max));
  return Math.ceil((max * 1.1) / step) * step;
}

const clockTime = (ms, seconds = true) =>
  new Date(ms).toLocaleTimeString([], {
    hourCycle: "h23",
    hour: "2-digit",
    minute: "2-digit",
    second: seconds ? "2-digit" : undefined,
  });
/** Local 24-hour times for the x axis's ticks (in seconds): minutes, unless a tick falls
 * between two. */
function timeTicks(ticks) {
  const seconds = ticks.some((tick) => tick % 60 !== 0);
  return ticks.map((tick) => clockTime(tick * 1000, seconds));
}
const perSecond = (n) => `${n >= 100 ? count(Math.round(n)) : Number(n.toPrecision(2))}/s`;
const bytesPerSecond = (n) => `${bytes(n)}/s`;
const recordsUnit = (n) => count(n);

/** A card of charts that `draw(stats, times, span)` fills from `load()` (a stats route;
 * `times` are its points' times in ms, `span` how long they cover, in words), now and at
 * every sampling interval after. */
async function chartsCard(title, hint, charts, signal, load, draw) {
  const status = h("div");
  let seconds;
  const refresh = async () => {
    const stats = await load();
    seconds = intervalOf(stats);
    const times = stats.points.map((point) => point.time);
    draw(stats, times, duration(stats.points.length * seconds * 1000));
    status.replaceChildren();
  };
  await refresh();
  keepFresh(status, signal, seconds * 1000, refresh);
  return card(
    title,
    h("span", { class: "hint" }, `${hint}, every ${duration(seconds * 1000)}`),
    status,
    h("div", { class: "charts" }, charts.map((chart) => chart.figure)),
  );
}

const intervalOf = (stats) => Math.max(1, stats.interval_s);

/** Two charts of a topic's traffic through this server: records and bytes, in and out per
 * second. */
function trafficCard(name, signal) {
  const records = lineChart("Records per second", perSecond, signal);
  const volume = lineChart("Bytes per second", bytesPerSecond, signal);
  const load = () => tg.topicStats(name, { signal });
  return chartsCard("Traffic", "through this server", [records, volume], signal, load, (stats, times, span) => {
    const rate = (pick) => stats.points.map((point) => pick(point) / intervalOf(stats));
    const sum = (pick) => stats.points.reduce((total, point) => total + pick(point), 0);
    const inAndOut = (field) => [
      { label: "in", values: rate((p) => p[`${field}_in`]) },
      { label: "out", values: rate((p) => p[`${field}_out`]) },
    ];
    const [recordsIn, recordsOut] = [sum((p) => p.records_in), sum((p) => p.records_out)];
    const recordsText = `Over the last ${span}: ${count(recordsIn)} records in, ${count(recordsOut)} out.`;
    records.draw(times, inAndOut("records"), recordsText);
    const [bytesIn, bytesOut] = [sum((p) => p.bytes_in), sum((p) => p.bytes_out)];
    volume.draw(times, inAndOut("bytes"), `Over the last ${span}: ${bytes(bytesIn)} in, ${bytes(bytesOut)} out.`);
  });
}

/** A group's total lag and each partition's (the first few). */
function lagCard(name, signal) {
  const total = lineChart("Total lag", recordsUnit, signal);
  const each = lineChart("Lag per partition", recordsUnit, signal);
  const load = () => tg.groupStats(name, { signal });
  return chartsCard("Lag", "records behind", [total, each], signal, load, (stats, times, span) => {
    const lags = stats.points.map((point) => point.lag).filter((lag) => lag != null);
    total.draw(
      times,
      [{ label: "lag", values: stats.points.map((point) => point.lag) }],
      lags.length
        ? `Now ${count(lags.at(-1))} records behind; at most ${count(Math.max(...lags))} over the last ${span}.`
        : `Nothing committed over the last ${span}.`,
    );
    const shown = stats.partitions.slice(0, PALETTE.length);
    each.draw(
      times,
      shown.map((p) => ({ label: `${p.topic}/${p.partition}`, values: p.lag })),
      shown.length < stats.partitions.length
        ? `The first ${shown.length} of ${stats.partitions.length} partitions; the table below has them all.`
        : `${count(stats.partitions.length)} partitions with a committed offset over the last ${span}.`,
    );
  });
}

// ---------------------------------------------------------------------------------------
// Forms

let fieldIds = 0;

/** A labelled control. `hint` is text or a function of the control's value; `check`
 * returns what is wrong with the value ("" when nothing), and blocks submitting it. */
function field(label, control, { hint, check } = {}) {
  const id = `field-${++fieldIds}`;
  const note = h("small", { class: "hint", id: `${id}-hint` });
  const error = h("small", { class: "field-error", id: `${id}-error` });
  control.id = id;
  control.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
  const update = (showError) => {
    note.textContent = typeof hint === "function" ? hint(control.value) : (hint ?? "");
    const problem = check?.(control.value) ?? "";
    control.setCustomValidity(problem);
    if (showError) error.textContent = problem;
  };
  control.addEventListener("input", () => update(true));
  update(false);
  return h("div", { class: "field" }, h("label", { class: "field-label", for: id }, label), control, note, error);
}

/** Runs `action(form.elements)` on submit with the buttons disabled; a failure is shown
 * in `status`. */
function onSubmit(form, status, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const buttons = [...form.querySelectorAll("button")];
    status.replaceChildren();
    buttons.forEach((button) => (button.disabled = true));
    try {
      await action(form.elements);
    } catch (error) {
      if (error.code !== "closed") status.replaceChildren(alertBox(error));
    } finally {
      buttons.forEach((button) => (button.disabled = false));
    }
  });
}

/** A modal form that closes once `action` succeeds and shows its failure otherwise. */
function formDialog({ title, intro, fields, submitLabel, danger = false, action }) {
  const status = h("div");
  const dialog = h("dialog", { "aria-label": title });
  const form = h(
    "form",
    {},
    h("h2", {}, title),
    intro && h("p", { class: "muted" }, intro),
    fields,
    status,
    h(
      "div",
      { class: "form-actions" },
      h("button", { type: "button", class: "button", onclick: () => dialog.close() }, "Cancel"),
      h("button", { type: "submit", class: danger ? "button danger solid" : "button primary" }, submitLabel),
    ),
  );
  onSubmit(form, status, async (elements) => {
    await action(elements);
    dialog.close();
  });
  dialog.append(form);
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
}

// Names, keys, JSON and tokens: no spelling fixes, no autofill.
const VERBATIM = { autocomplete: "off", spellcheck: "false" };
const textInput = (name, attributes) => h("input", { name, ...VERBATIM, ...attributes });
const textArea = (name, attributes, text) => h("textarea", { name, ...VERBATIM, ...attributes }, text);
const numberInput = (name, attributes) => h("input", { name, type: "number", step: 1, ...attributes });

function partitionSelect(partitions, anyLabel) {
  return h(
    "select",
    { name: "partition" },
    anyLabel && h("option", { value: "" }, anyLabel),
    Array.from({ length: partitions }, (_, p) => h("option", { value: p }, `Partition ${p}`)),
  );
}

function jsonProblem(text) {
  if (!text.trim()) return "";
  try {
    JSON.parse(text);
    return "";
  } catch (error) {
    return `Not valid JSON: ${error.message}`;
  }
}

/** "name: value" lines as a headers object; null when a line is not of that form. */
function parseHeaders(text) {
  const headers = {};
  for (const line of text.split("\n").filter((l) => l.trim())) {
    const colon = line.indexOf(":");
    const name = line.slice(0, Math.max(colon, 0)).trim();
    if (!name) return null;
    headers[name] = line.slice(colon + 1).trim();
  }
  return headers;
}

/** -1 or a positive whole number, as retention settings take; blank keeps the default. */
function retentionProblem(text) {
  return text === "" || Number(text) === -1 || Number(text) >= 1 ? "" : "-1 (no limit) or at least 1";
}

function retentionFields(topic) {
  return [
    field("Retention time (ms)", numberInput("retention_ms", { min: -1, value: topic?.retention_ms }), {
      hint: (v) => (v === "" ? "Blank: the server's default (7 days). -1: forever." : `= ${retentionTime(Number(v))}`),
      check: retentionProblem,
    }),
    field("Retention size (bytes)", numberInput("retention_bytes", { min: -1, value: topic?.retention_bytes }), {
      hint: (v) => (v === "" ? "Per partition. Blank or -1: no limit." : `= ${retentionSize(Number(v))}`),
      check: retentionProblem,
    }),
  ];
}

/** The retention fields that were filled in and differ from `topic`'s. */
function retentionChanges(elements, topic) {
  const changes = {};
  for (const name of ["retention_ms", "retention_bytes"]) {
    const value = elements[name].value;
    if (value !== "" && Number(value) !== topic?.[name]) changes[name] = Number(value);
  }
  return changes;
}

// ---------------------------------------------------------------------------------------
// Topics

const TOPIC_COLUMNS = [
  ["Topic", "name"], ["Partitions", "num"], ["Records", "num"], ["Size", "num"], ["Retention"], [""],
];
const REPLICA_COLUMNS = [["Leader", "num"], ["Replicas"], ["In sync (ISR)"]];
const PARTITION_COLUMNS = [
  ["Partition", "num"], ["Log start", "num"], ["High watermark", "num"], ["Records", "num"], ["Size", "num"],
  ...REPLICA_COLUMNS,
];

/** A partition's leader, replicas (AR) and in-sync replicas (ISR), with the out-of-sync
 * ones (OSR = AR − ISR) and a missing leader called out. */
function replicaCells(partition) {
  const outOfSync = partition.replicas.filter((id) => !partition.isr.includes(id));
  return [
    partition.leader == null ? badge("none", "danger") : String(partition.leader),
    nodeList(partition.replicas),
    [nodeList(partition.isr), outOfSync.length > 0 && badge(`out of sync: ${outOfSync.join(", ")}`, "danger")],
  ];
}

const nodeList = (ids) => (ids.length ? ids.join(", ") : muted("none"));
const underReplicated = (partition) => partition.leader == null || partition.isr.length < partition.replicas.length;
const withReplicas = (cells, partition) => {
  const all = [...cells, ...replicaCells(partition)];
  return underReplicated(partition) ? flagged(all) : all;
};

async function topicsView(main, signal) {
  const header = pageHeader(
    { title: "Topics", subtitle: "Streams on this server: partitions, records and bytes stored." },
    h("button", { type: "button", class: "button primary", onclick: createTopicDialog }, "New topic"),
  );
  await refreshingPage(main, signal, header, 10_000, async () => {
    const { topics } = await tg.listTopics({ signal });
    if (topics.length === 0) {
      return [emptyCard("No topics yet", "Create one with “New topic”, or POST /v1/topics.")];
    }
    // The list has no offsets; each topic's own page does (a row shows dashes without it).
    const details = await describeAll(topics, signal);
    const rows = topics.map((topic, i) => {
      const sums = details[i] && totals(details[i].partition_offsets);
      return [
        h("a", { href: topicHref(topic.name) }, topic.name),
        count(topic.partitions),
        sums ? count(sums.records) : "—",
        bytes(sums?.size),
        `${retentionTime(topic.retention_ms)} · ${retentionSize(topic.retention_bytes)}`,
        h("a", { class: "button small", href: tailHref(topic.name) }, "Live tail"),
      ];
    });
    return [card("All topics", badge(count(topics.length)), table(TOPIC_COLUMNS, rows))];
  });
}

function createTopicDialog() {
  formDialog({
    title: "New topic",
    fields: [
      field(
        "Name",
        textInput("topic", { required: true, maxlength: 249, pattern: "[A-Za-z0-9._\\-]+" }),
        { hint: "Letters, digits, '.', '_' and '-', up to 249." },
      ),
      field("Partitions", numberInput("partitions", { min: 1, max: 1024, value: 1, required: true }), {
        hint: "1 to 1024; more can be added later, never removed.",
      }),
      h("div", { class: "form-row" }, retentionFields()),
    ],
    submitLabel: "Create topic",
    action: async (elements) => {
      const name = elements.topic.value;
      await tg.createTopic(name, { partitions: Number(elements.partitions.value), ...retentionChanges(elements) });
      toast(`Topic ${name} created`);
      location.hash = topicHref(name);
    },
  });
}

function editTopicDialog(topic) {
  formDialog({
    title: `Change ${topic.name}`,
    intro: "Partitions can only be added. Keyed records then map to other partitions than before, as in Kafka.",
    fields: [
      field(
        "Partitions",
        numberInput("partitions", { min: topic.partitions, max: 1024, value: topic.partitions, required: true }),
      ),
      h("div", { class: "form-row" }, retentionFields(topic)),
    ],
    submitLabel: "Save changes",
    action: async (elements) => {
      const body = retentionChanges(elements, topic);
      const partitions = Number(elements.partitions.value);
      if (partitions !== topic.partitions) body.partitions = partitions;
      if (Object.keys(body).length > 0) {
        await tg.updateTopic(topic.name, body);
        toast(`Topic ${topic.name} changed`);
      }
      render();
    },
  });
}

function deleteTopicDialog(name) {
  formDialog({
    title: `Delete ${name}?`,
    intro: "Every record of the topic and every group's committed offsets for it go, for good.",
    fields: [
      field("Type the topic's name to confirm", textInput("confirm", { required: true }), {
        check: (value) => (value === name ? "" : "Not the topic's name"),
      }),
    ],
    submitLabel: "Delete topic",
    danger: true,
    action: async () => {
      await tg.deleteTopic(name);
      toast(`Topic ${name} deleted`);
      location.hash = "#/topics";
    },
  });
}

async function topicView(main, signal, name) {
  let topic;
  const actions = h("div", { class: "actions" });
  const header = pageHeader({ title: name, crumb: ["Topics", "#/topics"] }, actions);
  const redraw = await refreshingPage(main, signal, header, 5000, async () => {
    topic = await tg.describeTopic(name, { signal });
    return topicSummary(topic);
  });
  actions.append(
    h("a", { class: "button primary", href: tailHref(name) }, "Live tail"),
    h("button", { type: "button", class: "button", onclick: () => editTopicDialog(topic) }, "Edit"),
    h("button", { type: "button", class: "button danger", onclick: () => deleteTopicDialog(name) }, "Delete"),
  );
  main.append(
    await trafficCard(name, signal),
    browseCard(name, topic.partitions, signal),
    publishCard(name, topic.partitions, redraw),
  );
}

function topicSummary(topic) {
  const partitions = topic.partition_offsets;
  const sums = totals(partitions);
  const rows = partitions.map((p) =>
    withReplicas(
      [
        p.partition,
        count(p.log_start_offset),
        count(p.high_watermark),
        count(p.high_watermark - p.log_start_offset),
        bytes(p.size_bytes),
      ],
      p,
    ),
  );
  return [
    h(
      "div",
      { class: "stats" },
      stat("Records", count(sums.records)),
      stat("Size", bytes(sums.size), sums.size == null && "not reported by this server"),
      stat("Partitions", count(topic.partitions)),
      stat("Retention", retentionTime(topic.retention_ms), retentionSize(topic.retention_bytes)),
    ),
    card(
      "Partitions",
      [],
      table(PARTITION_COLUMNS, rows, ["Total", "", "", count(sums.records), bytes(sums.size), "", "", ""]),
    ),
  ];
}

/** The record the form describes, its value exact: see `exactJson`. */
function publishRecord(elements) {
  return {
    value: exactJson(elements.json.value),
    key: elements.key.value || undefined,
    partition: elements.partition.value === "" ? undefined : Number(elements.partition.value),
    headers: elements.headers.value.trim() ? parseHeaders(elements.headers.value) : undefined,
  };
}

/** JSON as typed, numbers digit for digit: a plain JSON.parse would round long ones, and
 * the server keeps values as sent. Each number stays raw JSON text, which JSON.stringify
 * writes back unchanged; a browser without JSON.rawJSON gets the parsed value. */
function exactJson(text) {
  if (typeof JSON.rawJSON !== "function") return JSON.parse(text);
  return JSON.parse(text, (_key, value, context) =>
    typeof value === "number" ? JSON.rawJSON(context.source) : value,
  );
}

function publishCard(topic, partitions, onPublished) {
  const status = h("div");
  const result = h("p", { class: "result", role: "status" });
  const form = h(
    "form",
    {},
    h(
      "div",
      { class: "form-row" },
      field("Key", textInput("key"), { hint: "Blank: no key." }),
      field("Partition", partitionSelect(partitions, "Auto"), { hint: "Auto: by key, else round-robin." }),
    ),
    field("Value", textArea("json", { rows: 5, required: true, placeholder: '{"id": 1}' }), {
      hint: "Any JSON value.",
      check: jsonProblem,
    }),
    field("Headers", textArea("headers", { rows: 2, placeholder: "source: console" }), {
      hint: "Optional, one name: value per line.",
      check: (text) => (parseHeaders(text) ? "" : "Each line needs a name, a colon and a value"),
    }),
    status,
    h("div", { class: "form-actions" }, result, h("button", { type: "submit", class: "button primary" }, "Publish")),
  );
  onSubmit(form, status, async (elements) => {
    result.replaceChildren();
    const [{ partition, offset }] = await tg.publish(topic, [publishRecord(elements)]);
    result.append("Published: ", badge(`partition ${partition}`, "ok"), badge(`offset ${offset}`, "ok"));
    await onPublished?.();
  });
  return card("Publish a record", [], h("div", { class: "card-body" }, form));
}

const RECORD_COLUMNS = [["Partition", "num"], ["Offset", "num"], ["Time"], ["Key"], ["Value and headers"]];

/** JSON on one line with a space after commas and colons, so that a narrow column can
 * wrap it between members. Strings keep their own spaces: their newlines are escaped. */
function oneLine(value) {
  return JSON.stringify(value, null, 1).replace(/\n */g, " ");
}

function recordCells(record) {
  const headers = Object.entries(record.headers ?? {});
  return [
    record.partition,
    count(record.offset),
    timestamp(record.timestamp),
    record.key == null ? muted("null") : h("code", {}, record.key),
    [
      h("pre", {}, oneLine(record.value)),
      headers.length > 0 && chips(headers.map(([name, value]) => `${name}: ${value}`)),
    ],
  ];
}

/** Reads a partition a page at a time, from an offset or from the first record at or
 * after a time, or searches it by key or by text in the value; "Next page" and "Search on"
 * submit the form again from where the server stopped. */
function browseCard(topic, partitions, signal) {
  const status = h("div");
  const results = h("div");
  const mode = h(
    "select",
    { name: "from" },
    h("option", { value: "offset" }, "An offset"),
    h("option", { value: "time" }, "A time"),
  );
  const offset = numberInput("offset", { min: 0, placeholder: "first stored" });
  const time = h("input", { name: "time", type: "datetime-local", step: 1 });
  const offsetField = field("Offset", offset);
  const timeField = field("Time", time, { hint: "Your local time." });
  const showMode = () => {
    offsetField.hidden = mode.value !== "offset";
    timeField.hidden = mode.value !== "time";
    time.required = mode.value === "time";
  };
  mode.addEventListener("change", showMode);
  showMode();
  const form = h(
    "form",
    {},
    h(
      "div",
      { class: "form-row" },
      field("Partition", partitionSelect(partitions)),
      field("From", mode),
      offsetField,
      timeField,
      field("Limit", h("select", { name: "limit" }, [20, 50, 100].map((n) => h("option", { value: n }, n)))),
    ),
    h(
      "div",
      { class: "form-row" },
      field("Key is", textInput("key", { maxlength: 4096 }), { hint: "Blank: any key." }),
      field("Value contains", textInput("contains", { maxlength: 4096 }), {
        hint: "Text of the value's JSON, e.g. \"kettle\" or \"qty\": 2.",
      }),
    ),
    status,
    h("div", { class: "form-actions" }, h("button", { type: "submit", class: "button primary" }, "Read")),
  );

  const goOn = (next) => {
    mode.value = "offset";
    showMode();
    offset.value = next;
    form.requestSubmit();
  };

  onSubmit(form, status, async (elements) => {
    results.replaceChildren(); // an error must not sit under the previous page's records
    const partition = Number(elements.partition.value);
    let from = offset.value === "" ? undefined : Number(offset.value);
    if (mode.value === "time") {
      from = (await tg.offsetForTimestamp(topic, partition, new Date(time.value).getTime(), { signal })).offset;
    }
    const search = { key: elements.key.value || undefined, contains: elements.contains.value || undefined };
    const searching = search.key !== undefined || search.contains !== undefined;
    const limit = Number(elements.limit.value);
    const page = await tg.fetch(topic, partition, { offset: from, limit, ...search, signal });
    const shown = searching ? searchResult(page, from ?? page.log_start_offset, goOn) : browseResult(page, goOn);
    results.replaceChildren(...shown);
  });
  return card("Browse records", [], h("div", { class: "card-body" }, form), results);
}

const storedRange = (page) =>
  `The partition holds offsets ${count(page.log_start_offset)} to ${count(page.high_watermark)} (exclusive).`;

function browseResult(page, goOn) {
  if (page.records.length === 0) {
    return [h("p", { class: "empty" }, `No records from offset ${count(page.next_offset)} yet. ${storedRange(page)}`)];
  }
  const first = page.records[0].offset;
  return [
    table(RECORD_COLUMNS, page.records.map(recordCells)),
    h(
      "div",
      { class: "card-foot" },
      h("span", { class: "muted" }, `Offsets ${count(first)}–${count(page.next_offset - 1)}. ${storedRange(page)}`),
      page.next_offset < page.high_watermark &&
        h("button", { type: "button", class: "button small", onclick: () => goOn(page.next_offset) }, "Next page"),
    ),
  ];
}

/** The matches of one bounded scan (`--max-scan-records`), and how far it looked. */
function searchResult(page, from, goOn) {
  const looked =
    page.next_offset > from
      ? `Searched offsets ${count(from)}–${count(page.next_offset - 1)}: `
      : `Nothing to search from offset ${count(from)}: `;
  const found = `${count(page.records.length)} found. `;
  const more = page.next_offset < page.high_watermark;
  const foot = h(
    "div",
    { class: "card-foot" },
    h("span", { class: "muted" }, looked, found, more ? storedRange(page) : "That is the end of the partition."),
    more && h("button", { type: "button", class: "button small", onclick: () => goOn(page.next_offset) }, "Search on"),
  );
  return page.records.length ? [table(RECORD_COLUMNS, page.records.map(recordCells)), foot] : [foot];
}

// ---------------------------------------------------------------------------------------
// Live tail

const TAIL_CAP = 500; // rows kept, newest first; older ones leave the page (and memory)

const TAIL_STATES = {
  connecting: ["connecting", "accent"],
  subscribed: ["live", "ok"],
  closed: ["stopped", "danger"],
};

async function tailView(main, signal, name) {
  main.append(pageHeader({ title: name, crumb: [name, topicHref(name)], subtitle: "Live tail over WebSocket" }));
  // The topic's page answers 401, 403 or 404 plainly, where a refused socket would only
  // close and retry.
  const topic = await tg.describeTopic(name, { signal });

  const state = badge("connecting", "dot accent");
  const received = badge("0 received");
  const notices = h("div");
  const records = table(RECORD_COLUMNS, []);
  const rows = records.querySelector("tbody");
  const waiting = h("p", { class: "empty" }, "Waiting for records. Publish one, or start from the earliest.");
  const from = h(
    "select",
    { "aria-label": "Start from" },
    h("option", { value: "latest" }, "From now on"),
    h("option", { value: "earliest" }, "From the earliest"),
  );
  let subscription;
  let generation = 0;
  let total = 0;

  const clear = () => {
    rows.replaceChildren();
    total = 0;
    received.textContent = "0 received";
    waiting.hidden = false;
  };
  const show = (batch) => {
    for (const record of batch) rows.prepend(row(RECORD_COLUMNS, recordCells(record)));
    while (rows.childElementCount > TAIL_CAP) rows.lastElementChild.remove();
    total += batch.length;
    received.textContent = `${count(total)} received`;
    waiting.hidden = true;
  };
  const setState = (value) => {
    const [text, tone] = TAIL_STATES[value] ?? ["reconnecting", "warn"];
    state.className = `badge dot ${tone}`;
    state.textContent = text;
  };
  // One socket (the view's client's); a new start replaces the subscription on it.
  const start = () => {
    subscription?.close();
    clear();
    notices.replaceChildren();
    // A restarted subscription's predecessor still reports its close: ignore it.
    const mine = ++generation;
    const ifCurrent = (fn) => (arg) => mine === generation && fn(arg);
    subscription = tg.subscribe(
      name,
      { from: from.value },
      {
        records: ifCurrent(show),
        gap: ifCurrent((gap) =>
          notices.replaceChildren(alertBox({ code: "offset_out_of_range", message: gap.message }, "info")),
        ),
        error: ifCurrent((error) => notices.replaceChildren(alertBox(error))),
        state: ifCurrent(setState),
      },
    );
  };
  from.addEventListener("change", start);
  start();

  main.append(
    h(
      "div",
      { class: "tail-layout" },
      publishCard(name, topic.partitions),
      card(
        "Records",
        [state, received, from, h("button", { type: "button", class: "button small", onclick: clear }, "Clear")],
        notices,
        records,
        waiting,
      ),
    ),
  );
}

// ---------------------------------------------------------------------------------------
// Consumer groups

const GROUP_COLUMNS = [["Group", "name"], ["State"], ["Generation", "num"], ["Members", "num"], ["Lag", "num"]];
const MEMBER_COLUMNS = [["Member"], ["Client"], ["Topics"], ["Assignment"], ["Last seen"]];
const PROGRESS_COLUMNS = [
  ["Topic", "name"], ["Partition", "num"], ["Member"], ["Committed", "num"], ["High watermark", "num"], ["Lag", "num"],
];

const stateBadge = (state) => badge(state, state === "stable" ? "dot ok" : "dot");

/** Records not yet committed, over the partitions with a commit; null before any. */
function totalLag(group) {
  const lags = group.partitions.map((p) => p.lag).filter((lag) => lag != null);
  return lags.length ? lags.reduce((a, b) => a + b, 0) : null;
}

function lagBadge(lag) {
  if (lag == null) return muted("—", "nothing committed yet");
  return badge(count(lag), lag === 0 ? "ok" : "warn");
}

async function groupsView(main, signal) {
  const header = pageHeader({ title: "Consumer groups", subtitle: "Refreshed every 5 seconds." });
  await refreshingPage(main, signal, header, 5000, async () => {
    const { groups } = await tg.listGroups({ signal });
    if (groups.length === 0) {
      return [
        emptyCard("No consumer groups yet", "One appears when a member first polls or subscribes with a group name."),
      ];
    }
    // The list has no lag; each group's own answer does (a row shows a dash without it).
    const details = await mapLimit(groups, 6, (group) => tg.describeGroup(group.group, { signal }).catch(() => null));
    const rows = groups.map((group, i) => [
      h("a", { href: groupHref(group.group) }, group.group),
      stateBadge(group.state),
      count(group.generation),
      count(group.members),
      details[i] ? lagBadge(totalLag(details[i])) : "—",
    ]);
    return [card("All groups", badge(count(groups.length)), table(GROUP_COLUMNS, rows))];
  });
}

async function groupView(main, signal, name) {
  let group;
  const reset = h("button", { type: "button", class: "button danger" }, "Reset offsets");
  const header = pageHeader(
    { title: name, crumb: ["Consumer groups", "#/groups"], subtitle: "Refreshed every 3 seconds." },
    reset,
  );
  const redraw = await refreshingPage(main, signal, header, 3000, async () => {
    group = await tg.describeGroup(name, { signal });
    // As Kafka's --reset-offsets: only while no member could commit over the new offsets.
    reset.disabled = group.members.length > 0 || group.partitions.length === 0;
    reset.title = group.members.length > 0 ? "Only for a group with no live members" : "";
    return groupDetail(group);
  });
  reset.addEventListener("click", () => resetOffsetsDialog(group, redraw));
  main.append(await lagCard(name, signal));
}

const RESET_TARGETS = [
  ["earliest", "The earliest offset"],
  ["latest", "The latest offset (skip everything stored)"],
  ["time", "The first record at or after a time"],
  ["offset", "An offset"],
];

/** Moves a memberless group's committed offsets on one of its topics (the seek route),
 * once the person has ticked that they mean it. */
function resetOffsetsDialog(group, redraw) {
  const topics = [...new Set(group.partitions.map((p) => p.topic))].sort();
  const target = h("select", { name: "to" }, RESET_TARGETS.map(([value, label]) => h("option", { value }, label)));
  const time = h("input", { name: "time", type: "datetime-local", step: 1 });
  const offset = numberInput("offset", { min: 0 });
  const timeField = field("Time", time, { hint: "Your local time." });
  const offsetField = field("Offset", offset, { hint: "For every partition of the topic." });
  const showTarget = () => {
    timeField.hidden = target.value !== "time";
    offsetField.hidden = target.value !== "offset";
    time.required = target.value === "time";
    offset.required = target.value === "offset";
  };
  target.addEventListener("change", showTarget);
  showTarget();
  formDialog({
    title: `Reset offsets of ${group.group}`,
    intro: "The group's committed offsets on the topic move; its next member starts there.",
    fields: [
      field("Topic", h("select", { name: "topic" }, topics.map((topic) => h("option", { value: topic }, topic)))),
      field("To", target),
      timeField,
      offsetField,
      field("I mean it", h("input", { name: "confirm", type: "checkbox", required: true }), {
        hint: "Records before the new offsets are not read again; those after are read again.",
      }),
    ],
    submitLabel: "Reset offsets",
    danger: true,
    action: async (elements) => {
      const topic = elements.topic.value;
      const to = await seekTarget(topic, target.value, elements);
      const moved = await tg.seek(group.group, topic, to);
      toast(`${group.group} on ${topic}: ${moved.offsets.map((o) => `${o.partition} → ${o.offset}`).join(", ")}`);
      await redraw();
    },
  });
}

async function seekTarget(topic, target, elements) {
  if (target === "earliest" || target === "latest") return target;
  if (target === "time") return { timestamp: new Date(elements.time.value).getTime() };
  const { partitions } = await tg.describeTopic(topic);
  const offset = Number(elements.offset.value);
  return { offsets: Array.from({ length: partitions }, (_, partition) => ({ partition, offset })) };
}

function groupDetail(group) {
  const lag = totalLag(group);
  // Members in the order of the partitions they read, as the table below lists those.
  const firstRead = (member) => {
    const index = group.partitions.findIndex((p) => p.member_id === member.member_id);
    return index < 0 ? group.partitions.length : index;
  };
  const members = [...group.members].sort((a, b) => firstRead(a) - firstRead(b)).map((member) => [
    h("code", { class: "member" }, member.member_id),
    member.client ?? muted("—"),
    chips(member.topics),
    chips(member.assignment.map((a) => `${a.topic}/${a.partition}`)),
    ago(member.last_seen_ms),
  ]);
  const partitions = group.partitions.map((p) => [
    h("a", { href: topicHref(p.topic) }, p.topic),
    p.partition,
    p.member_id ? h("code", { class: "member" }, p.member_id) : muted("unassigned"),
    p.committed_offset == null ? muted("—", "nothing committed yet") : count(p.committed_offset),
    count(p.high_watermark),
    lagBadge(p.lag),
  ]);
  return [
    h(
      "div",
      { class: "stats" },
      stat("State", stateBadge(group.state)),
      stat("Generation", count(group.generation)),
      stat("Members", count(group.members.length)),
      stat("Total lag", lag == null ? "—" : count(lag), "records behind the high watermarks"),
    ),
    card(
      "Members",
      badge(count(members.length)),
      members.length
        ? table(MEMBER_COLUMNS, members)
        : h("p", { class: "empty" }, "No live members: only committed offsets remain."),
    ),
    card(
      "Partitions",
      [],
      partitions.length
        ? table(PROGRESS_COLUMNS, partitions)
        : h("p", { class: "empty" }, "No partitions assigned or committed yet."),
    ),
  ];
}

// ---------------------------------------------------------------------------------------
// Cluster

const NODE_COLUMNS = [["Node", "num"], ["Address", "name"], ["Role"], ["Leads", "num"], ["Replicas", "num"]];
const CLUSTER_PARTITION_COLUMNS = [["Topic", "name"], ["Partition", "num"], ...REPLICA_COLUMNS];

async function clusterView(main, signal) {
  const header = pageHeader({
    title: "Cluster",
    subtitle:
      "Nodes, the controller, and each partition's leader, replicas and in-sync replicas. " +
      "Refreshed every 5 seconds.",
  });
  await refreshingPage(main, signal, header, 5000, async () => {
    const [cluster, { topics }] = await Promise.all([tg.cluster({ signal }), tg.listTopics({ signal })]);
    showUnderReplicated(cluster.under_replicated.length);
    const partitions = (await describeAll(topics, signal))
      .filter(Boolean)
      .flatMap((topic) => topic.partition_offsets.map((p) => ({ topic: topic.name, ...p })));
    const nodes = cluster.nodes.map((node) => [
      String(node.id),
      h("code", {}, node.address),
      node.id === cluster.controller ? badge("controller", "accent") : muted("broker"),
      count(partitions.filter((p) => p.leader === node.id).length),
      count(partitions.filter((p) => p.replicas.includes(node.id)).length),
    ]);
    const partitionRows = (list) =>
      list.map((p) => withReplicas([h("a", { href: topicHref(p.topic) }, p.topic), p.partition], p));
    const short = cluster.under_replicated;
    return [
      h(
        "div",
        { class: "stats" },
        stat("Nodes", count(cluster.nodes.length)),
        stat("Controller", cluster.controller == null ? "none" : String(cluster.controller)),
        stat("Partitions", count(partitions.length)),
        stat("Under-replicated", count(short.length), "ISR short of the replicas"),
      ),
      card("Nodes", badge(count(cluster.nodes.length)), table(NODE_COLUMNS, nodes)),
      card(
        "Under-replicated partitions",
        badge(count(short.length), short.length ? "danger" : "ok"),
        short.length
          ? table(CLUSTER_PARTITION_COLUMNS, partitionRows(short))
          : h("p", { class: "empty" }, "None: every partition's in-sync replicas are all its replicas."),
      ),
      card(
        "All partitions",
        badge(count(partitions.length)),
        partitions.length
          ? table(CLUSTER_PARTITION_COLUMNS, partitionRows(partitions))
          : h("p", { class: "empty" }, "No topics yet."),
      ),
    ];
  });
}

/** The count beside "Cluster" in the navigation: shown only when partitions are short. */
function showUnderReplicated(n) {
  const note = document.getElementById("under-replicated");
  note.hidden = n === 0;
  note.textContent = count(n);
  note.title = `${count(n)} under-replicated partitions`;
}

/** Updates the navigation's count; on each page change and every 15 s. */
function refreshClusterCount() {
  tg.cluster()
    .then((cluster) => showUnderReplicated(cluster.under_replicated.length))
    // No token yet, or one without access: the pages say so; the count just waits.
    .catch(() => {});
}

// ---------------------------------------------------------------------------------------
// Navigation

const ROUTES = [
  [/^#\/topics$/, "topics", topicsView],
  [/^#\/topics\/([^/]+)$/, "topics", topicView],
  [/^#\/tail\/([^/]+)$/, "topics", tailView],
  [/^#\/groups$/, "groups", groupsView],
  [/^#\/groups\/([^/]+)$/, "groups", groupView],
  [/^#\/cluster$/, "cluster", clusterView],
];

// Aborted when the view changes: its requests, refresh loops and socket stop with it.
let viewing = new AbortController();

function render() {
  const route = ROUTES.find(([pattern]) => pattern.test(location.hash));
  if (!route) {
    history.replaceState(null, "", "#/topics");
    return render();
  }
  const [pattern, section, view] = route;
  viewing.abort();
  viewing = new AbortController();
  tg.close();
  tg = newClient();
  // The cluster page sets the count itself, from the same answer it shows.
  if (section !== "cluster") refreshClusterCount();
  const { signal } = viewing;
  document.querySelectorAll("dialog").forEach((dialog) => dialog.close());
  for (const link of document.querySelectorAll(".nav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  showIdentity();
  const main = document.getElementById("view");
  main.replaceChildren();
  let params;
  try {
    params = pattern.exec(location.hash).slice(1).map(decodeURIComponent);
  } catch {
    main.append(alertBox(new TidegateError("invalid_path", "this address is not encoded properly", { status: 404 })));
    return;
  }
  view(main, signal, ...params).catch((error) => {
    if (!signal.aborted) main.append(alertBox(error));
  });
}

addEventListener("hashchange", render);
render();
setInterval(() => document.hidden || refreshClusterCount(), 15_000);
