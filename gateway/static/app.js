// margintick dashboard: one page, six views (blotter, account, what-if, hedge, rules, alerts) over the
// gateway's HTTP API. Live margin and alert rows arrive on the conflated SSE stream and are drawn at
// most once per animation frame; /ui/health is polled so numbers are marked stale when calc stops.
"use strict";

const STREAM = "/stream?tables=margin,alert&conflate=100";
const HEALTH_MS = 1000;
const ACCOUNT_REFRESH_MS = 2000;
const MAX_ALERTS = 2000;

const money = new Intl.NumberFormat("en-US", {maximumFractionDigits: 0});
const fmtMoney = v => (v === null || v === undefined || Number.isNaN(v)) ? "" : money.format(v);
const fmtPercent = v => (v === null || v === undefined || !Number.isFinite(v)) ? "" : v.toFixed(1) + "%";   // already in %
const fmtPct = v => fmtPercent(v === null || v === undefined ? v : 100 * v);                        // a share
const fmtQty = v => (v === null || v === undefined) ? "" : new Intl.NumberFormat("en-US").format(v);
const fmtTime = t => t ? t.slice(11, 19) : "";
const timeMs = t => Date.parse(t.slice(0, 23) + "Z");
const $ = id => document.getElementById(id);

const state = {
  user: null,
  accounts: {},          // account -> reference row (desk, ccp, collateral, buffer, threshold, callpct, models)
  margin: {},            // account -> model -> latest margin row
  sod: {},               // "account|model" -> first requirement of the day
  models: [],            // every model name seen, in order
  dirty: new Set(),      // accounts whose blotter row waits for the next frame
  frame: 0,
  stale: {},             // reason key -> text; numbers are stale while any is set
  staleSince: null,
  view: null,
  account: null,         // the account on screen in the account view
  accountTimer: 0,
};
const tables = {};
const charts = {};

// ---- requests -----------------------------------------------------------------------------------
async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, {...options, credentials: "same-origin",
                                  headers: {"X-Requested-With": "margintick", ...(options.headers || {})}});
  } catch (e) {
    setStale("gateway", "the gateway is not answering");
    throw new Error("the gateway is not answering; retrying");
  }
  clearStale("gateway");
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (response.status === 401) {
    location.href = "/login?expired";
    throw new Error("your session has expired: sign in again");
  }
  if (!response.ok) throw new Error((body && body.error) || `the gateway answered ${response.status}`);
  return body;
}

function showError(id, error) {
  const el = $(id);
  el.textContent = error ? String(error.message || error) : "";
  el.hidden = !error;
}

// ---- staleness ----------------------------------------------------------------------------------
function setStale(key, text) {
  if (!state.staleSince) state.staleSince = new Date();
  state.stale[key] = text;
  renderStale();
}

function clearStale(key) {
  if (!(key in state.stale)) return false;
  delete state.stale[key];
  if (Object.keys(state.stale).length === 0) state.staleSince = null;
  renderStale();
  return true;
}

function renderStale() {
  const reasons = Object.values(state.stale);
  const status = $("status"), banner = $("banner");
  document.body.classList.toggle("stale", reasons.length > 0);
  if (reasons.length) {
    status.textContent = "STALE";
    status.className = "status stale";
    banner.textContent = `Numbers are stale since ${state.staleSince.toLocaleTimeString()}: ${reasons.join("; ")}. ` +
                         "They update again when it is back.";
    banner.hidden = false;
  } else {
    status.textContent = "LIVE";
    status.className = "status live";
    banner.hidden = true;
  }
}

async function pollHealth() {
  try {
    const health = await api("/ui/health");
    const wasDown = "calc" in state.stale || "rdb" in state.stale;
    health.calc ? clearStale("calc") : setStale("calc", "calc is not answering");
    health.rdb ? clearStale("rdb") : setStale("rdb", "the rdb is not answering");
    if (wasDown && health.calc && health.rdb) await reloadAll();
  } catch (e) { /* the gateway itself: marked stale by api() */ }
  setTimeout(pollHealth, HEALTH_MS);
}

// ---- tables and charts --------------------------------------------------------------------------
function makeTable(key, element, options) {
  if (tables[key]) return tables[key];
  tables[key] = new Promise(resolve => {
    const table = new Tabulator(element, {layout: "fitDataTable", ...options});
    table.on("tableBuilt", () => resolve(table));
  });
  return tables[key];
}

const num = (title, field, formatter = fmtMoney, extra = {}) =>
  ({title, field, hozAlign: "right", sorter: "number", minWidth: 96, formatter: c => formatter(c.getValue()), ...extra});

function lineChart(key, element, series, data, xTime = true) {
  const width = Math.max(320, (element.clientWidth || 600) - 12);
  charts[key]?.destroy();
  element.textContent = "";
  // one point (or none) gives uPlot an empty x range: an hour either side of it instead
  const xRange = (u, min, max) => min === max ? [min - (xTime ? 3600 : 1), max + (xTime ? 3600 : 1)] : [min, max];
  charts[key] = new uPlot({width, height: 260, scales: {x: {time: xTime, range: xRange}},
                           series: [{}, ...series.map(s => ({width: 2, value: (u, v) => fmtMoney(v), ...s}))],
                           axes: [{stroke: "#aab"}, {stroke: "#aab", size: 80, values: (u, vs) => vs.map(fmtMoney)}]},
                          data, element);
  return charts[key];
}

function barChart(key, element, labels, values) {
  const width = Math.max(320, (element.clientWidth || 600) - 12);
  charts[key]?.destroy();
  element.textContent = "";
  charts[key] = new uPlot({width, height: 260, scales: {x: {time: false}},
                           series: [{}, {label: "contribution", fill: "#4a90d980", stroke: "#4a90d9",
                                         paths: uPlot.paths.bars({size: [0.7, 60]}), points: {show: false},
                                         value: (u, v) => fmtMoney(v)}],
                           axes: [{stroke: "#aab", values: (u, vs) => vs.map(i => labels[i] ?? "")},
                                  {stroke: "#aab", size: 80, values: (u, vs) => vs.map(fmtMoney)}]},
                          [labels.map((_, i) => i), values], element);
}

// ---- blotter --------------------------------------------------------------------------------------
function primaryModel(account) {
  const ref = state.accounts[account];
  return ref && ref.models ? ref.models.split(",")[0] : Object.keys(state.margin[account] || {})[0];
}

function blotterRow(account) {
  const ref = state.accounts[account] || {}, rows = state.margin[account] || {};
  const model = primaryModel(account), row = rows[model] || {};
  const out = {sym: account, desk: ref.desk, ccp: ref.ccp, model, vm: row.vm, requirement: row.requirement,
               collateral: row.collateral, excess: row.excess, call: row.call, time: fmtTime(row.time),
               buffer_used: ref.buffer > 0 && row.call !== undefined ? row.call / ref.buffer : null,
               sod_change: row.requirement !== undefined && state.sod[`${account}|${model}`] !== undefined
                 ? row.requirement - state.sod[`${account}|${model}`] : null,
               over_threshold: ref.threshold > 0 && row.requirement > ref.threshold,
               over_callpct: ref.buffer > 0 && row.call > ref.callpct * ref.buffer};
  for (const m of state.models) out[`im_${m}`] = rows[m] ? rows[m].im : null;
  return out;
}

function blotterColumns() {
  return [
    {title: "Account", field: "sym", headerFilter: "input", frozen: true,
     formatter: c => `<a href="#/account/${encodeURIComponent(c.getValue())}">${c.getValue()}</a>`},
    {title: "Desk", field: "desk", headerFilter: "input"},
    {title: "CCP", field: "ccp", headerFilter: "input"},
    ...state.models.map(m => num(`IM ${m}`, `im_${m}`)),
    num("VM", "vm"), num("Requirement", "requirement"), num("Collateral", "collateral"),
    num("Excess", "excess"), num("Predicted call", "call"),
    num("Buffer used", "buffer_used", fmtPct), num("Change since SOD", "sod_change"),
    {title: "Updated", field: "time", hozAlign: "right"},
  ];
}

function colourRow(row) {
  const d = row.getData(), el = row.getElement();
  el.classList.toggle("breach-call", !!d.over_callpct);
  el.classList.toggle("breach-threshold", !!d.over_threshold && !d.over_callpct);
}

async function loadBlotter() {
  const snap = await api("/ui/blotter");
  state.accounts = Object.fromEntries(snap.accounts.map(a => [a.sym, a]));
  state.margin = {};
  snap.margin.forEach(takeMarginRow);
  state.sod = Object.fromEntries(snap.sod.map(r => [`${r.sym}|${r.model}`, r.requirement]));
  for (const sym of Object.keys(state.accounts)) for (const m of (state.accounts[sym].models || "").split(","))
    if (m && !state.models.includes(m)) state.models.push(m);
  const table = await makeTable("blotter", $("blotter"), {index: "sym", height: "calc(100vh - 110px)", layout: "fitDataStretch", rowHeight: 26,
    columns: blotterColumns(), rowFormatter: colourRow, initialSort: [{column: "call", dir: "desc"}]});
  if (!table.redrawsOnScroll) {
    table.redrawsOnScroll = true;
    let pending = 0;
    table.on("scrollVertical", () => { pending ||= requestAnimationFrame(() => { pending = 0; redrawOnScreen(table); }); });
  }
  table.setColumns(blotterColumns());
  await table.replaceData(Object.keys(state.accounts).sort().map(blotterRow));
  fillAccountSelects();
}

// Tabulator redraws a row on updateData, measuring its height each time (a forced layout): only the
// rows on screen go through it (found from the scroll position; asking Tabulator which rows are
// visible measures every row). The others get their data object refreshed in place (what sorting
// and filtering read) and are drawn again from it when scrolled into view.
function rowsOnScreen() {
  const holder = $("blotter").querySelector(".tabulator-tableholder");
  if (!holder) return new Set();
  const top = holder.scrollTop, bottom = top + holder.clientHeight, out = new Set();
  for (const row of holder.querySelectorAll(".tabulator-row")) {
    if (row.offsetTop + row.offsetHeight >= top && row.offsetTop <= bottom)
      out.add(row.querySelector('[tabulator-field="sym"]').textContent);
  }
  return out;
}

function updateBlotter(table, accounts) {
  const onScreen = rowsOnScreen(), drawn = [];
  for (const account of accounts) {
    if (onScreen.has(account)) { drawn.push(blotterRow(account)); continue; }
    const row = table.getRow(account);
    if (row) Object.assign(row.getData(), blotterRow(account));
    else table.addData([blotterRow(account)]);
  }
  if (drawn.length) table.updateData(drawn);
}

function redrawOnScreen(table) {
  table.updateData([...rowsOnScreen()].filter(a => a in state.accounts).map(blotterRow));
}

function takeMarginRow(row) {
  (state.margin[row.sym] ||= {})[row.model] = row;
  if (!state.models.includes(row.model)) state.models.push(row.model);
  state.dirty.add(row.sym);
}

function scheduleDraw() {
  if (state.frame) return;
  state.frame = requestAnimationFrame(async () => {
    state.frame = 0;
    const accounts = [...state.dirty];
    state.dirty.clear();
    const table = tables.blotter && await tables.blotter;
    if (table && accounts.length) updateBlotter(table, accounts.filter(a => a in state.accounts));
    if (state.view === "account" && accounts.includes(state.account)) {
      renderAccountCards();
      clearTimeout(state.accountTimer);
      state.accountTimer = setTimeout(() => loadAccount(state.account, false), ACCOUNT_REFRESH_MS);
    }
  });
}

// ---- the live stream ------------------------------------------------------------------------------
function openStream() {
  const source = new EventSource(STREAM);
  source.addEventListener("open", () => { if (clearStale("stream")) reloadAll(); });
  source.addEventListener("error", () => setStale("stream", "the live stream from the gateway is down"));
  source.addEventListener("margin", e => { JSON.parse(e.data).forEach(takeMarginRow); scheduleDraw(); });
  source.addEventListener("alert", e => addAlerts(JSON.parse(e.data), true));
}

// ---- alerts ---------------------------------------------------------------------------------------
const alertColumns = () => [
  {title: "Time", field: "time", formatter: c => fmtTime(c.getValue()), sorter: "string"},
  {title: "Account", field: "sym", headerFilter: "input",
   formatter: c => `<a href="#/account/${encodeURIComponent(c.getValue())}">${c.getValue()}</a>`},
  {title: "Kind", field: "kind", headerFilter: "input"},
  {title: "Severity", field: "severity", headerFilter: "input",
   formatter: c => `<span class="sev sev-${c.getValue()}">${c.getValue()}</span>`},
  {title: "Model", field: "model"}, num("Value", "value"), num("Threshold", "threshold"),
  num("Stress loss", "stress"), {title: "What happened", field: "text", width: 360, formatter: "textarea"},
  {title: "", field: "ack", headerSort: false, width: 150, formatter: c => c.getValue()
     ? `<span class="acked">${c.getValue()}</span>` : '<button class="ack">Acknowledge</button>',
   cellClick: (e, c) => { if (!c.getValue() && e.target.classList.contains("ack")) acknowledge(c.getRow()); }},
  {title: "Drivers", field: "drivers", width: 280, formatter: "textarea",
   mutator: v => (v || "").split(";").filter(Boolean).map(d => { const [sym, c] = d.split(":"); return `${sym} ${fmtMoney(Number(c))}`; }).join(", ")},
];

async function loadAlerts() {
  const rows = await api("/alerts");
  const table = await makeTable("alerts", $("alerts"), {height: "calc(100vh - 150px)", layout: "fitDataStretch", columns: alertColumns(),
                                                        initialSort: [{column: "time", dir: "desc"}]});
  await table.replaceData(rows.slice(-MAX_ALERTS));
}

async function addAlerts(rows, live) {
  const table = tables.alerts && await tables.alerts;
  if (table) {
    await table.addData(rows, true);
    const excess = table.getDataCount() - MAX_ALERTS;
    if (excess > 0) table.getRows().slice(-excess).forEach(r => r.delete());
  }
  if (live && state.view === "account" && rows.some(r => r.sym === state.account)) {
    const accountTable = tables.accountAlerts && await tables.accountAlerts;
    if (accountTable) accountTable.addData(rows.filter(r => r.sym === state.account), true);
  }
}

// An acknowledgement ends the reminders of the account's episode of that kind (notify); it is a row of
// the `ack` table with who and when.
async function acknowledge(row) {
  const a = row.getData();
  try {
    const ack = await api("/ack", {method: "POST", headers: {"Content-Type": "application/json"},
                                   body: JSON.stringify({account: a.sym, kind: a.kind})});
    row.update({ack: `acknowledged by ${ack.user}`});
  } catch (e) { row.update({ack: `not acknowledged: ${e.message}`}); }
}

// ---- alert rules ----------------------------------------------------------------------------------
const RULE_FIELDS = ["id", "scope", "target", "kind", "level", "window", "severity", "channels"];

async function loadRules() {
  const rows = await api("/rules");
  (await makeTable("rules", $("rules"), {index: "sym", columns: [
    {title: "Id", field: "sym"}, {title: "Scope", field: "scope"}, {title: "Account / desk", field: "target"},
    {title: "Kind", field: "kind"}, num("Level", "level", v => v == null ? "" : String(v)), num("Window", "window", v => v ?? ""),
    {title: "Severity", field: "severity"}, {title: "Channels", field: "channels"},
    {title: "Enabled", field: "enabled", formatter: "tickCross"}, {title: "Set by", field: "user"},
    {title: "Time", field: "time", formatter: c => fmtTime(c.getValue())}]}))
    .replaceData(rows);
  tables.rules.then(t => t.on("rowClick", (e, row) => editRule(row.getData())));
}

function editRule(r) {
  for (const f of RULE_FIELDS) $(`rule-${f}`).value = (f === "id" ? r.sym : r[f]) ?? "";
  $("rule-enabled").checked = !!r.enabled;
}

async function saveRule(event) {
  event.preventDefault();
  $("rule-saved").hidden = true;
  try {
    const level = Number($("rule-level").value.replaceAll(",", ""));
    if (!Number.isFinite(level)) throw new Error(`the level "${$("rule-level").value}" is not a number`);
    const windowText = $("rule-window").value.trim();
    const spec = {id: $("rule-id").value.trim(), scope: $("rule-scope").value, target: $("rule-target").value.trim(),
                  kind: $("rule-kind").value, level, severity: $("rule-severity").value,
                  channels: $("rule-channels").value.trim(), enabled: $("rule-enabled").checked};
    if (windowText) spec.window = Number(windowText);
    const saved = await api("/setrule", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify(spec)});
    showError("rule-error", null);
    $("rule-saved").textContent = `Rule ${saved.rule} saved (seq ${saved.seq}); calc applies it from the next margin row.`;
    $("rule-saved").hidden = false;
    await loadRules();
  } catch (e) { showError("rule-error", e); }
}

// ---- account view ---------------------------------------------------------------------------------
function card(label, value, cls = "") {
  return `<div class="card ${cls}"><div class="label">${label}</div><div class="value">${value}</div></div>`;
}

function renderAccountCards() {
  const account = state.account, ref = state.accounts[account] || {};
  const rows = state.margin[account] || {}, model = primaryModel(account), row = rows[model] || {};
  const b = blotterRow(account);
  $("account-cards").innerHTML = [
    card(`Requirement (${model})`, fmtMoney(row.requirement), b.over_threshold ? "warn" : ""),
    card("Predicted call", fmtMoney(row.call), b.over_callpct ? "bad" : ""),
    card("Buffer used", fmtPct(b.buffer_used)), card("Collateral", fmtMoney(row.collateral)),
    card("Excess", fmtMoney(row.excess)), card("VM", fmtMoney(row.vm)),
    ...Object.keys(rows).map(m => card(`IM ${m}`, fmtMoney(rows[m].im))),
    card("Change since SOD", fmtMoney(b.sod_change)), card("Desk / CCP", `${ref.desk || ""} / ${ref.ccp || ""}`),
  ].join("");
}

function describeShocks(s) {
  const parts = [];
  for (const group of ["sector_shocks", "sym_shocks"])
    for (const [k, v] of Object.entries(s[group] || {})) parts.push(`${k} ${v > 0 ? "+" : ""}${(100 * v).toFixed(0)}%`);
  for (const group of ["sector_vol_multipliers", "sym_vol_multipliers"])
    for (const [k, v] of Object.entries(s[group] || {})) parts.push(`${k} vol ×${v}`);
  if (s.vol_multiplier && s.vol_multiplier !== 1) parts.push(`vol ×${s.vol_multiplier}`);
  if (s.correlation_multiplier && s.correlation_multiplier !== 1) parts.push(`correlations ×${s.correlation_multiplier}`);
  return parts.join(", ");
}

async function loadAccount(account, reset = true) {
  state.account = account;
  $("account-title").textContent = account;
  if (reset) { $("account-body").hidden = true; showError("account-error", null); }
  let view;
  try {
    view = await api(`/ui/account?account=${encodeURIComponent(account)}`);
  } catch (e) {
    if (state.account === account) { showError("account-error", e); $("account-body").hidden = true; }
    return;
  }
  if (state.account !== account) return;
  showError("account-error", null);
  $("account-body").hidden = false;
  view.margin.forEach(r => { (state.margin[r.sym] ||= {})[r.model] = r; });
  if (!state.accounts[account]) state.accounts[account] = view.reference;
  renderAccountCards();
  const drivers = view.drivers.slice(0, 12);
  barChart("drivers", $("account-drivers"), drivers.map(d => d.sym), drivers.map(d => d.contribution));
  const model = primaryModel(account), h = view.history.filter(r => r.model === model);
  lineChart("history", $("account-history"),
            [{label: "IM", stroke: "#4a90d9"}, {label: "requirement", stroke: "#e0b341"}, {label: "call", stroke: "#e05252"}],
            [h.map(r => timeMs(r.time) / 1000), h.map(r => r.im), h.map(r => r.requirement), h.map(r => r.call)]);
  $("account-stress-box").hidden = view.stress.length === 0;
  (await makeTable("accountStress", $("account-stress"), {index: "scenario", columns: [
    {title: "Scenario", field: "scenario"}, num("Stress loss", "loss"), num("Stressed requirement", "requirement"),
    num("Predicted call", "call"), num("Buffer used", "buffer_used", fmtPct),
    {title: "Shocks", field: "shocks", formatter: c => describeShocks(c.getValue())}]}))
    .replaceData(view.stress);
  const span = Array.isArray(view.breakdown) ? view.breakdown : [];
  $("account-span-box").hidden = span.length === 0;
  if (span.length) (await makeTable("accountSpan", $("account-span"), {columns: [
    {title: "Combined commodity", field: "cc"}, {title: "Ccy", field: "currency"}, num("Scan", "scan"),
    num("Intra spread", "intra"), num("Spot", "spot"), num("Inter credit", "inter"), num("SOM", "som"),
    num("Risk", "risk"), num("NOV", "nov"), num("Initial", "initial"), num("Maintenance", "maintenance")]}))
    .replaceData(span);
  const recon = view.recon || {rows: [], accuracy: []};
  $("account-recon-box").hidden = recon.rows.length === 0;
  if (recon.rows.length) {
    (await makeTable("accountReconAccuracy", $("account-recon-accuracy"), {columns: [
      {title: "Model", field: "model"}, num("Figures", "n", fmtQty), num("Mean abs error", "mae"),
      num("Mean abs %", "mape", fmtPercent), num("Bias %", "bias_pct", fmtPercent),
      num("No prediction", "missing", fmtQty)]})).replaceData(recon.accuracy);
    (await makeTable("accountRecon", $("account-recon"), {maxHeight: 260, columns: [
      {title: "Cut-off", field: "cutoff", formatter: c => (c.getValue() || "").slice(0, 19).replace("T", " ")},
      {title: "CCP", field: "ccp"}, {title: "Model", field: "model"}, num("Predicted IM", "predicted"),
      num("CCP initial", "actual"), num("Difference", "diff"), num("%", "pct", fmtPercent)]}))
      .replaceData(recon.rows.slice().reverse());
  }
  (await makeTable("accountPositions", $("account-positions"), {index: "sym", columns: [
    {title: "Sym", field: "sym", headerFilter: "input"}, num("Qty", "qty", fmtQty), num("Mark", "mark", v => v?.toFixed(2) ?? ""),
    num("Value", "value"), num("VM", "vm")]})).replaceData(view.positions);
  (await makeTable("accountAlerts", $("account-alerts"), {maxHeight: 300, columns: alertColumns(),
                                                          initialSort: [{column: "time", dir: "desc"}]}))
    .replaceData(view.alerts);
}

// ---- what-if --------------------------------------------------------------------------------------
function fillAccountSelects() {
  for (const id of ["whatif-account", "hedge-account"]) {
    const select = $(id), chosen = select.value;
    select.innerHTML = Object.keys(state.accounts).sort().map(a => `<option>${a}</option>`).join("");
    if (chosen && chosen in state.accounts) select.value = chosen;
  }
}

function addTradeRow(sym = "", qty = "", price = "") {
  const tr = document.createElement("tr");
  tr.innerHTML = `<td><input class="t-sym" size="12"></td><td><input class="t-qty" size="12"></td>` +
                 `<td><input class="t-price" size="10"></td><td><button type="button" class="t-del">remove</button></td>`;
  tr.querySelector(".t-sym").value = sym;
  tr.querySelector(".t-qty").value = qty;
  tr.querySelector(".t-price").value = price;
  tr.querySelector(".t-del").onclick = () => tr.remove();
  $("whatif-trades").appendChild(tr);
}

function readBasket() {
  const trades = [];
  for (const [i, tr] of [...$("whatif-trades").rows].entries()) {
    const sym = tr.querySelector(".t-sym").value.trim(), qtyText = tr.querySelector(".t-qty").value.trim();
    const priceText = tr.querySelector(".t-price").value.trim();
    if (!sym && !qtyText && !priceText) continue;
    if (!sym) throw new Error(`trade ${i + 1}: give the instrument`);
    const qty = Number(qtyText.replaceAll(",", ""));
    if (!qtyText || !Number.isFinite(qty)) throw new Error(`trade ${i + 1} (${sym}): the quantity "${qtyText}" is not a number`);
    if (qty === 0) throw new Error(`trade ${i + 1} (${sym}): the quantity must not be 0`);
    const trade = {sym, qty};
    if (priceText) {
      const price = Number(priceText.replaceAll(",", ""));
      if (!Number.isFinite(price) || price <= 0) throw new Error(`trade ${i + 1} (${sym}): the price "${priceText}" is not a positive number`);
      trade.price = price;
    }
    trades.push(trade);
  }
  if (!trades.length) throw new Error("add at least one trade");
  return trades;
}

async function runWhatif(event) {
  event.preventDefault();
  $("whatif-result").hidden = true;
  try {
    const account = $("whatif-account").value, trades = readBasket();
    const result = await api("/whatif", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify({account, trades})});
    showError("whatif-error", null);
    const rows = [];
    for (const [model, r] of Object.entries(result.models))
      for (const k of ["im", "vm", "requirement", "call"])
        rows.push({model, measure: k, before: r.before[k], after: r.after[k], delta: r.delta[k]});
    $("whatif-result").hidden = false;
    (await makeTable("whatif", $("whatif-table"), {columns: [{title: "Model", field: "model"}, {title: "", field: "measure"},
      num("Before", "before"), num("After", "after"), num("Delta", "delta")]})).replaceData(rows);
    (await makeTable("whatifDrivers", $("whatif-drivers"), {columns: [{title: "Sym", field: "sym"}, num("Contribution", "contribution")]}))
      .replaceData(result.drivers);
    const s = result.stress;
    (await makeTable("whatifStress", $("whatif-stress"), {columns: [{title: "", field: "what"}, num("Before", "before"),
      num("After", "after"), num("Delta", "delta")]}))
      .replaceData(s ? [{what: `${s.scenario} call`, before: s.before, after: s.after, delta: s.delta},
                        {what: `${s.scenario} loss`, before: s.loss_before, after: s.loss_after, delta: s.loss_after - s.loss_before}] : []);
  } catch (e) { showError("whatif-error", e); }
}

// ---- hedge sizing ---------------------------------------------------------------------------------
async function runHedge(event) {
  event.preventDefault();
  $("hedge-result").hidden = true;
  try {
    const account = $("hedge-account").value, sym = $("hedge-sym").value.trim(), targetText = $("hedge-target").value.trim();
    if (!sym) throw new Error("give the hedge instrument");
    const params = new URLSearchParams({account, sym});
    if (targetText) {
      const target = Number(targetText.replaceAll(",", ""));
      if (!Number.isFinite(target) || target < 0) throw new Error(`the target "${targetText}" is not a non-negative number`);
      params.set("target", String(target));
    }
    const h = await api(`/hedge?${params}`);
    showError("hedge-error", null);
    const t = h.target || {}, tc = t.call, ts = t.stress;
    $("hedge-cards").innerHTML = [
      card("Held now", fmtQty(h.held)), card(`Mark of ${h.sym}`, h.price?.toFixed(2)),
      card("Quantity minimising the requirement", fmtQty(h.minimum.qty), "good"),
      card("Requirement now → at minimum", `${fmtMoney(h.now.requirement)} → ${fmtMoney(h.minimum.requirement)}`),
      card("Call now → at minimum", `${fmtMoney(h.now.call)} → ${fmtMoney(h.minimum.call)}`),
      card("Stress call now → at minimum", `${fmtMoney(h.now.stress_call)} → ${fmtMoney(h.minimum.stress_call)}`),
      card(`Smallest qty for call ≤ ${fmtMoney(t.value)}`, tc ? fmtQty(tc.qty) : `not reachable: ${t.reason?.call || ""}`),
      card(`Smallest qty for stress call ≤ ${fmtMoney(t.value)}`, ts ? fmtQty(ts.qty) : `not reachable: ${t.reason?.stress || ""}`),
    ].join("");
    $("hedge-result").hidden = false;
    const c = h.curve;                                        // rows, by quantity
    lineChart("hedge", $("hedge-curve"), [{label: "requirement", stroke: "#e0b341"}, {label: "call", stroke: "#e05252"},
                                          {label: "stress call", stroke: "#b36ae2"}],
              ["qty", "requirement", "call", "stress_call"].map(k => c.map(p => p[k])), false);
  } catch (e) { showError("hedge-error", e); }
}

// ---- navigation -----------------------------------------------------------------------------------
function route() {
  const [, view = "blotter", arg] = location.hash.split("/");
  const name = ["blotter", "account", "whatif", "hedge", "rules", "alerts"].includes(view) ? view : "blotter";
  state.view = name;
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${name}`;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.id === `nav-${name}`);
  if (name === "account") loadAccount(decodeURIComponent(arg || ""));
  if (name === "alerts") loadAlerts().catch(e => setStale("alerts", e.message));
  if (name === "rules") loadRules().catch(e => showError("rule-error", e));
  if (name === "blotter") tables.blotter?.then(t => t.redraw());
}

async function reloadAll() {
  try {
    await loadBlotter();
    if (state.view === "account") await loadAccount(state.account, false);
    if (state.view === "alerts") await loadAlerts();
  } catch (e) { setStale("load", `the page could not load its data (${e.message})`); return; }
  clearStale("load");
}

async function start() {
  try {
    state.user = await api("/ui/session");
  } catch (e) { return; }
  $("user").textContent = `${state.user.user} (${state.user.role})`;
  $("whatif-form").addEventListener("submit", runWhatif);
  $("whatif-add").addEventListener("click", () => addTradeRow());
  $("hedge-form").addEventListener("submit", runHedge);
  $("rule-form").addEventListener("submit", saveRule);
  addTradeRow();
  window.addEventListener("hashchange", route);
  await reloadAll();
  renderStale();
  openStream();
  pollHealth();
  route();
}

start();
