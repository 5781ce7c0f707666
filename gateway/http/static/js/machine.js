// Machine page, as a production manager reads it: the state and (with `machines:` config) the
// OEE of this shift, today and the shown range; the current values; the states over time as
// coloured bands (the KPI states, enum and text fields); measured values as charts and counters
// as rates per hour. The range opens on what fits the data there is; CSV of what is shown.

import { getJSON, subscribe } from "./api.js";
import { h, fill } from "./dom.js";
import { t, lang, formatAge, formatClock, formatDuration, formatValue, displayLabel, labelLang } from "./i18n.js";
import { valueCell, deathText } from "./overview.js";
import { Chart, chartTitle, isCounter, counterWindow, bucketWidth } from "./charts.js";
import { Timeline, segmentsFromBuckets, categoryOf } from "./timeline.js";
import { findMachine, KpiPanel, fetchStates, stateBadge } from "./kpi.js";
import { WritePanel } from "./writes.js";

/** Where the gateway writes the machines' KPIs (gateway/kpi/config.py). */
const KPI_MEASUREMENT = "kpi";
const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
const REFRESH = { fit: 5e3, "15m": 5e3, "1h": 10e3, "24h": 60e3 };
/** Integer fields with these words hold a state code, not a quantity: a band, not a plot. */
const STATE_WORDS = /(^|_)(state|mode|status|phase|step)(_|$)/i;
const STATE_FIELDS = ["state", "state_name", "mode_name", "status", "mode"];

function parseCardId(id) {
  const tags = {};
  let measurement = null;
  for (const part of id.split(",")) {
    const i = part.indexOf("=");
    if (i < 0) continue;
    const key = part.slice(0, i);
    const value = part.slice(i + 1);
    if (key === "measurement" && id.startsWith("measurement=")) measurement = value; else tags[key] = value;
  }
  return { tags, measurement };
}

/** One series (measurement, field, every tag) as a text, to match a card's value to a series. */
function seriesKey(s, field = s.field) {
  const tags = Object.entries(s.tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([s.measurement, field, tags]);
}

function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
  return d.toISOString().slice(0, 16);
}

/** A tile's value: the number, and its unit smaller beside it ("1,520.41 kWh"); a bad or uncertain
 *  value as on the cards; a long text cut with … (the whole of it on hover). */
function tileValue(v) {
  const attrs = { dataset: { field: v.field, quality: v.quality || "good" } };
  if (v.offline_since || (v.quality || "good") !== "good" || typeof v.value !== "number" || !v.unit) {
    const cell = valueCell(v, attrs);
    if (!cell.title) cell.title = cell.textContent;
    return cell;
  }
  const text = formatValue(v.value, { ...v, unit: "" });
  return h("dd", { ...attrs, title: `${text} ${v.unit}` }, text, h("span", { class: "unit" }, ` ${v.unit}`));
}

function isBand(s) {
  if (s.kind === "str" || s.kind === "bool") return true;
  if (typeof s.last_value === "string" || typeof s.last_value === "boolean") return true;
  return s.kind === "int" && STATE_WORDS.test(s.field);
}

export function showMachine(root, cardId) {
  const { tags, measurement } = parseCardId(cardId);
  const name = Object.values(tags).at(-1) || measurement || cardId;
  const title = h("h1", {}, name);
  const badge = h("span", { class: "badge", id: "machine-state" }, "");
  const since = h("span", { class: "since muted", id: "machine-since" });
  const current = h("dl", { class: "tiles", id: "machine-values" });
  const charts = h("div", { class: "charts", id: "charts" });
  const note = h("p", { class: "empty", hidden: true, id: "charts-note" });
  const rangeNote = h("span", { class: "range-note muted", id: "range-note", "aria-live": "polite" });
  const fromInput = h("input", { type: "datetime-local", id: "range-from", "aria-label": t("machine.from") });
  const toInput = h("input", { type: "datetime-local", id: "range-to", "aria-label": t("machine.to") });
  const custom = h("span", { hidden: true, id: "custom-range", class: "custom-range" },
    h("label", {}, `${t("machine.from")} `, fromInput), " ",
    h("label", {}, `${t("machine.to")} `, toInput), " ",
    h("button", { type: "button", id: "range-apply", onclick: applyCustom }, t("machine.apply")));
  const rangeButtons = ["fit", ...Object.keys(RANGES), "custom"].map((key) =>
    h("button", { type: "button", dataset: { range: key }, "aria-pressed": "false", hidden: key === "fit", onclick: () => select(key, null, true) },
      t(`machine.range.${key}`)));
  const csvButton = h("button", { type: "button", id: "csv", onclick: downloadCsv }, t("machine.csv"));
  const timeline = new Timeline();
  const kpiBox = h("div", { id: "kpi-box" });
  const trends = h("h2", { hidden: true, id: "trends-title" }, t("machine.trends"));
  // (an operator's controls for the machine's writable fields, and its last writes: js/writes.js)
  const writes = new WritePanel({ machine: name, belongs: (s) => belongs(s) });
  root.append(
    h("div", { class: "toolbar" }, h("a", { class: "btn", href: "#/" }, t("machine.back"))),
    h("div", { class: "machine-head" }, title, badge, since),
    kpiBox,
    h("h2", {}, t("machine.current")), current, writes.el,
    h("div", { class: "toolbar range-bar", role: "group", "aria-label": t("machine.trends") },
      rangeButtons, custom, h("span", { class: "spacer" }), csvButton),
    h("div", { class: "range-line" }, rangeNote),
    note, timeline.el, trends, charts,
  );

  let everything = [];      // every stored series of this machine
  let bands = [];           // state-like series of this machine: drawn as bands
  let plots = [];           // { info, chart, mode }
  let range = null;
  let window_ = null;       // { from, to } in ms, what is shown
  let fitStart = null;      // "since start": when this machine's data begins
  let fitClicked = false;   // "since start" chosen by the user (it then grows past an hour)
  let refreshTimer = null;
  let retryTimer = null;
  let groupBy = ["line", "machine"];
  let disposed = false;
  let offset = 0;           // server clock − browser clock (ms)
  let lastSeen = 0;         // the machine's last update (ms, server clock)
  let cardValues = [];
  let machine = null;       // the machine's KPI configuration (api/machines), or null
  let kpi = null;           // the KPI panel
  let drawing = 0;          // draws started (a late answer of an older one is dropped)
  const bandMemory = new Map(); // series id → { from, buckets, initial } of the last draw
  let shown = [];           // what the CSV saves: { info, buckets }

  const serverNow = () => Date.now() + offset;

  function belongs(s) {
    if (measurement !== null) return s.measurement === measurement && groupBy.every((k) => !(k in s.tags));
    return groupBy.every((k) => s.tags[k] === tags[k]);
  }

  function showCurrent(overview) {
    groupBy = overview.group_by;
    offset = overview.server_time * 1000 - Date.now();
    const card = overview.cards.find((c) => c.id === cardId);
    if (!card) { badge.textContent = t("machine.notfound"); return; }
    lastSeen = card.last_update * 1000;
    if (!machine) {
      badge.dataset.state = card.state;
      badge.textContent = t(`state.${card.state}`);
      badge.title = card.offline_reason === "death" ? deathText(card.offline_since)
        : card.last_update ? t("age.updated", { age: formatAge(overview.server_time - card.last_update) }) : "";
    } else if (card.state === "offline") {
      badge.dataset.state = "offline";
      badge.removeAttribute("data-category");
      badge.textContent = t("state.offline");
      badge.title = card.offline_reason === "death" ? deathText(card.offline_since) : "";
    }
    cardValues = card.values;
    writes.setValues(card.values);
    // Tiles are updated in place: nothing moves while values stream in.
    const tiles = new Map([...current.children].map((el) => [el.dataset.key, el]));
    const order = [];
    for (const v of card.values) {
      const key = seriesKey(v);
      let tile = tiles.get(key);
      const cell = tileValue(v);
      if (!tile) {
        tile = h("div", { class: "tile", dataset: { key } }, h("dt", {}), cell);
      } else {
        tile.replaceChild(cell, tile.querySelector("dd"));
      }
      const dt = tile.querySelector("dt");
      dt.textContent = displayLabel(v);
      const language = labelLang(v);
      if (language) dt.lang = language; else dt.removeAttribute("lang");
      tiles.delete(key);
      order.push(tile);
    }
    for (const gone of tiles.values()) gone.remove();
    order.forEach((el, i) => { if (current.children[i] !== el) current.insertBefore(el, current.children[i] || null); });
  }

  async function load() {
    const [overview, found, writable] = await Promise.all([
      getJSON("/api/overview"), findMachine(cardId, tags).catch(() => null), writes.fetch(),
    ]);
    if (disposed) return;
    showCurrent(overview);
    await writes.show(writable); // before the charts: the section never pushes them down later
    if (disposed) return;
    if (found && !machine) {
      machine = found;
      kpi = new KpiPanel(machine, { serverNow, onState: showKpiState });
      kpiBox.append(kpi.el);
      kpi.start();
    }
    const query = measurement !== null
      ? `measurement=${encodeURIComponent(measurement)}`
      : Object.entries(tags).map(([k, v]) => `tag=${encodeURIComponent(`${k}=${v}`)}`).join("&");
    // (the kpi measurement is the KPI engine's own output: the OEE cards show it, not charts)
    const all = (await getJSON(`/api/series?${query}`))
      .filter((s) => belongs(s) && s.id !== null && s.measurement !== KPI_MEASUREMENT);
    if (disposed) return;
    classify(all);
    if (!bands.length && !plots.length && !machine) {
      // No historian at all, or nothing of this machine stored yet (then look again shortly).
      note.textContent = t(overview.history ? "machine.waiting" : "machine.nohistory");
      note.hidden = false;
      if (overview.history) retryTimer = setTimeout(() => load().catch(showError), 3000);
      return;
    }
    note.hidden = true;
    await chooseRange(all);
  }

  /** A band's name: an enumeration's text (mode_name) is called like its code (mode); a state
   *  field without a label of its own is the machine's state. */
  function bandDisplay(s) {
    if (s.field.endsWith("_name")) {
      const code = everything.find((c) => seriesKey(c) === seriesKey(s, s.field.slice(0, -5)));
      if (code && code.label !== code.field) return { ...s, label: code.label, labels: code.labels };
    }
    if (STATE_FIELDS.includes(s.field) && displayLabel(s) === s.field) {
      return { ...s, label: t("machine.state.field"), labels: { [lang()]: t("machine.state.field") } };
    }
    return s;
  }

  function classify(all) {
    everything = all;
    const keys = new Set(all.map((s) => seriesKey(s)));
    const order = new Map(cardValues.map((v, i) => [seriesKey(v), i]));
    const rank = (s) => order.get(seriesKey(s)) ?? order.get(seriesKey(s, s.field.replace(/_name$/, ""))) ?? order.size;
    const byCard = (a, b) => rank(a) - rank(b) || displayLabel(a).localeCompare(displayLabel(b));
    const stateRank = (s) => { const i = STATE_FIELDS.indexOf(s.field); return i < 0 ? STATE_FIELDS.length : i; };
    const nextBands = [];
    const nextCharts = [];
    for (const s of all) {
      if (keys.has(seriesKey(s, `${s.field}_name`))) continue; // an enumeration: its name is the band
      if (machine && machine.state_field && s.field === machine.state_field) continue; // the KPI row shows it
      if (isBand(s)) nextBands.push(s);
      else if (typeof s.last_value === "number" || s.last_value === null) nextCharts.push({ info: s, mode: isCounter(s) ? "rate" : "value" });
    }
    nextBands.sort((a, b) => stateRank(a) - stateRank(b) || byCard(a, b));
    nextCharts.sort((a, b) => byCard(a.info, b.info));
    bands = nextBands;
    const keep = new Map(plots.map((p) => [p.info.id, p]));
    plots = nextCharts.map(({ info, mode }) => {
      const old = keep.get(info.id);
      if (old && old.mode === mode) { keep.delete(info.id); return old; }
      const chart = new Chart(info, {
        mode, title: chartTitle(info, groupBy, mode), syncKey: `machine:${cardId}`,
        onCursor: (time) => timeline.showCursor(time),
      });
      return { info, mode, chart };
    });
    for (const gone of keep.values()) gone.chart.destroy();
    fill(charts, plots.map((p) => p.chart.el));
    trends.hidden = plots.length === 0;
  }

  /** The range the page opens on: what fits the data there is. Data older than an hour: the
   *  last hour. Younger: from its first value ("since start"), growing live. Nothing in the
   *  last hour: the last hour that has data. */
  async function chooseRange(all) {
    const now = serverNow();
    const lastTime = Math.max(0, ...all.map((s) => s.last_time || 0));
    if (lastTime && lastTime < now - RANGES["1h"]) {
      fromInput.value = toLocalInput(lastTime - RANGES["1h"]);
      toInput.value = toLocalInput(lastTime + 60e3);
      select("custom", { from: lastTime - RANGES["1h"], to: lastTime + 60e3 });
      rangeNote.textContent = t("machine.last.note", { time: formatClock(lastTime) });
      return;
    }
    // Is there data in the hour before the last one? (two series tell: a machine's series start
    // together.) Asked while the last hour is fetched, which both answers need.
    const win = { from: now - RANGES["1h"], to: now };
    const [probes, data] = await Promise.all([
      Promise.all(all.slice(0, 2).map((s) => range_(s, now - 2 * RANGES["1h"], now - RANGES["1h"], 2).then((b) => b.length > 0))),
      fetchWindow(win),
    ]);
    if (disposed) return;
    select(probes.some(Boolean) ? "1h" : "fit", null, false, { win, data });
  }

  function select(key, fixed = null, clicked = false, prefetched = null) {
    range = key;
    fitClicked = key === "fit" && clicked;
    for (const b of rangeButtons) b.setAttribute("aria-pressed", String(b.dataset.range === key));
    rangeButtons[0].hidden = key !== "fit" && fitStart === null;
    custom.hidden = key !== "custom";
    rangeNote.textContent = "";
    clearInterval(refreshTimer);
    if (key === "custom") {
      const now = Date.now();
      if (!fromInput.value) fromInput.value = toLocalInput(now - 3600e3);
      if (!toInput.value) toInput.value = toLocalInput(now);
      if (fixed) draw(fixed).catch(showError);
      return;
    }
    draw(null, prefetched).catch(showError);
    if (REFRESH[key]) refreshTimer = setInterval(() => draw().catch(showError), REFRESH[key]);
  }

  function applyCustom() {
    const from = new Date(fromInput.value).getTime();
    const to = new Date(toInput.value).getTime();
    if (Number.isFinite(from) && Number.isFinite(to) && to > from) draw({ from, to }).catch(showError);
  }

  function windowFor(fixed) {
    if (fixed) return fixed;
    const to = serverNow();
    if (range === "fit") {
      if (fitStart === null) return { from: to - RANGES["1h"], to };
      // The data starts at the left edge; the first half-minute fills up from left to right.
      const pad = Math.max(1e3, (to - fitStart) * 0.02);
      return { from: fitStart - pad, to: Math.max(to, fitStart + 30e3) };
    }
    return { from: to - RANGES[range], to };
  }

  function range_(s, from, to, points) {
    return getJSON(`/api/series/${encodeURIComponent(s.id)}/range?from=${Math.floor(from)}&to=${Math.ceil(to)}&points=${points}`)
      .then((r) => r.buckets)
      .catch(() => []);
  }

  /** The band's value in force at ``from``: from the last draw when it covers it, else the last
   *  value before ``from`` (looking back as far as the window is long, at least an hour). */
  async function initialValue(s, from, to) {
    const memory = bandMemory.get(s.id);
    if (memory && memory.from <= from) {
      let value = memory.initial;
      for (const b of memory.buckets) { if (b.time <= from) value = b.last; else break; }
      return value;
    }
    const back = Math.max(to - from, RANGES["1h"]);
    const before = await range_(s, from - back, from - 1, 2);
    return before.length ? before.at(-1).last : null;
  }

  function bucketPoints() {
    const width = Math.max(240, charts.clientWidth || root.clientWidth || 800);
    return Math.min(1000, Math.max(100, Math.round(width)));
  }

  /** Everything the window shows: each chart's and band's buckets, the KPI states. */
  async function fetchWindow({ from, to }) {
    const points = bucketPoints();
    const counter = counterWindow(from, to);
    const [values, bandData, states] = await Promise.all([
      Promise.all(plots.map((p) => (p.mode === "rate"
        ? range_(p.info, counter.from, counter.to, counter.points)
        : range_(p.info, from, to, points)))),
      Promise.all(bands.map(async (s) => {
        // (a band needs no more than a bucket every 2 px: each bucket's last value costs a lookup)
        const [buckets, initial] = await Promise.all([range_(s, from, to, Math.ceil(points / 2)), initialValue(s, from, to)]);
        return { buckets, initial };
      })),
      machine ? fetchStates(machine, from, to).catch(() => null) : Promise.resolve(null),
    ]);
    return { values, bandData, states, points, counter };
  }

  async function draw(fixed, prefetched = null) {
    const ticket = ++drawing;
    let win = prefetched ? prefetched.win : windowFor(fixed);
    const { from, to } = win;
    const data = prefetched ? prefetched.data : await fetchWindow(win);
    if (disposed || ticket !== drawing) return;
    let { values, bandData } = data;
    const { states, points, counter } = data;
    if (range === "fit" && !fixed) {
      // Where the data starts: the first bucket of the measured values and bands (a bucket
      // starts at or before its first value; finer buckets of the next draws bring it closer).
      const firsts = [...values.filter((b, i) => plots[i].mode === "value"), ...bandData.map((d) => d.buckets)]
        .filter((b) => b.length).map((b) => b[0].time);
      const counters = values.filter((b, i) => plots[i].mode === "rate" && b.length).map((b) => b[0].time);
      const first = Math.min(...(firsts.length ? firsts : counters.length ? counters : [to - RANGES["15m"]]));
      if (fitStart === null) {
        fitStart = first;
        rangeButtons[0].hidden = false;
        win = windowFor();
      } else if (firsts.length && first > fitStart && first < to) {
        fitStart = first;
        win = windowFor();
      }
      if (serverNow() - fitStart > RANGES["1h"] && !fitClicked) {
        select("1h"); // opened on young data that is an hour old now: the usual sliding hour
        return;
      }
      rangeNote.textContent = t("machine.fit.note", { time: formatClock(fitStart), span: formatDuration((serverNow() - fitStart) / 1000) });
    }
    window_ = win;
    charts.dataset.from = String(Math.round(win.from));
    charts.dataset.to = String(Math.round(win.to));
    timeline.setWindow(win.from, win.to);
    // (a machine with shifts has its KPIs "in_shifts" too; the shift line is there even when the
    // window holds no shift, so that it does not come and go)
    const hasShifts = Boolean(machine && machine.today && machine.today.in_shifts);
    timeline.setShifts(states && hasShifts
      ? (states.shifts || []).map((w) => ({ from: w.from, to: w.to, label: t("kpi.shift.named", { name: w.name }) }))
      : null);
    const end = Math.max(lastSeen || 0, 0) || win.to;
    const rows = [];
    if (states) {
      rows.push({ id: "kpi-states", label: t("machine.state.field"), kind: "category", segments: states });
      // The machine's state field is the KPI row (its raw value on hover): not a second band.
      const raw = new Set(states.map((s) => s.value).filter((v) => v !== null && v !== undefined).map(String));
      const same = bands.map((s, i) => {
        const values = bandData[i].buckets.map((b) => b.last).filter((v) => v !== null && v !== undefined);
        return values.length > 0 && values.every((v) => raw.has(String(v)));
      });
      if (same.some(Boolean)) {
        bands = bands.filter((s, i) => !same[i]);
        bandData = bandData.filter((d, i) => !same[i]);
      }
    }
    shown = [];
    bands.forEach((s, i) => {
      const { buckets, initial } = bandData[i];
      bandMemory.set(s.id, { from: win.from, buckets, initial });
      const named = bandDisplay(s);
      rows.push({
        id: s.id, label: chartTitle(named, groupBy, "band"), lang: labelLang(named), kind: "value",
        segments: segmentsFromBuckets(buckets, initial, win.from, win.to, Math.max(end, buckets.length ? buckets.at(-1).time : 0)),
      });
      shown.push({ info: s, buckets });
    });
    timeline.setRows(rows);
    bands.forEach((s, i) => { timeline.rows.get(s.id).el.dataset.buckets = String(bandData[i].buckets.length); });
    plots.forEach((p, i) => {
      const width = p.mode === "rate" ? counter.width : bucketWidth(Math.floor(from), Math.ceil(to), points);
      p.chart.update(values[i], win, width, lastSeen ? lastSeen + 1e3 : Infinity);
      shown.push({ info: p.info, buckets: values[i] });
    });
    if (kpi) kpi.setRange(win.from, win.to, range === "custom");
  }

  function showKpiState(state) {
    if (!state || badge.dataset.state === "offline") return;
    const category = state.category || categoryOf(state.value) || "unknown";
    const { text, title } = stateBadge(state);
    badge.dataset.state = category;
    badge.dataset.category = category;
    badge.textContent = text;
    badge.title = title;
    since.textContent = state.since ? t("kpi.since", { time: formatClock(state.since), age: formatDuration((serverNow() - state.since) / 1000) }) : "";
  }

  function downloadCsv() {
    if (!window_) return;
    const lines = ["time,measurement,tags,field,mean,min,max,count,label,unit,last"];
    const quote = (text) => `"${String(text).replace(/"/g, '""')}"`;
    for (const { info, buckets } of shown) {
      const tagText = Object.entries(info.tags).map(([k, v]) => `${k}=${v}`).join(";");
      for (const b of buckets) {
        lines.push([new Date(b.time).toISOString(), quote(info.measurement), quote(tagText), quote(info.field),
          b.mean ?? "", b.min ?? "", b.max ?? "", b.count, quote(displayLabel(info)), quote(info.unit || ""),
          b.last === null || b.last === undefined ? "" : quote(b.last)].join(","));
      }
    }
    const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" });
    const stamp = new Date(window_.from).toISOString().slice(0, 16).replace(/[:T]/g, "");
    const a = h("a", { href: URL.createObjectURL(blob), download: `${(title.textContent || "machine").replace(/[^\w.-]+/g, "_")}-${stamp}.csv` });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  // Charts and bands follow the page's width (a scrollbar appearing, a rotated tablet).
  let resizeFrame = 0;
  const observer = new ResizeObserver(() => {
    cancelAnimationFrame(resizeFrame);
    resizeFrame = requestAnimationFrame(() => { for (const p of plots) p.chart.resize(); timeline.resize(); });
  });
  observer.observe(charts);
  timeline.onHover((time) => { for (const p of plots) p.chart.showTime(time); });
  const unsubscribe = subscribe("overview", showCurrent);
  function showError(e) { note.textContent = String(e); note.hidden = false; }
  load().catch(showError);
  return () => {
    disposed = true;
    clearInterval(refreshTimer);
    clearTimeout(retryTimer);
    unsubscribe();
    observer.disconnect();
    kpi?.stop();
    writes.destroy();
    for (const p of plots) p.chart.destroy();
  };
}
