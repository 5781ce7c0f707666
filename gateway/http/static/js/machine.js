// Machine page: the machine's current values and one chart per numeric series over
// 15 min / 1 h / 24 h / 7 days or a custom range; hover shows values; CSV of what is shown.

import { getJSON, subscribe } from "./api.js";
import { h, fill } from "./dom.js";
import { t, formatNumber, formatValue, formatAge, formatTime, lang, displayLabel } from "./i18n.js";
import { valueCell } from "./overview.js";

const RANGES = { "15m": 15 * 60e3, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
const REFRESH = { "15m": 5e3, "1h": 10e3, "24h": 60e3 };

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
function seriesKey(s) {
  const tags = Object.entries(s.tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([s.measurement, s.field, tags]);
}

function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60e3);
  return d.toISOString().slice(0, 16);
}

export function showMachine(root, cardId) {
  const { tags, measurement } = parseCardId(cardId);
  const title = h("h1", {}, Object.values(tags).at(-1) || measurement || cardId);
  const badge = h("span", { class: "badge", id: "machine-state" }, "");
  const current = h("dl", { class: "kv", id: "machine-values" });
  const charts = h("div", { class: "charts", id: "charts" });
  const note = h("p", { class: "empty", hidden: true, id: "charts-note" });
  const fromInput = h("input", { type: "datetime-local", id: "range-from", "aria-label": t("machine.from") });
  const toInput = h("input", { type: "datetime-local", id: "range-to", "aria-label": t("machine.to") });
  const custom = h("span", { hidden: true, id: "custom-range" },
    h("label", {}, `${t("machine.from")} `, fromInput), " ",
    h("label", {}, `${t("machine.to")} `, toInput), " ",
    h("button", { type: "button", id: "range-apply", onclick: applyCustom }, t("machine.apply")));
  const rangeButtons = [...Object.keys(RANGES), "custom"].map((key) =>
    h("button", { type: "button", dataset: { range: key }, "aria-pressed": "false", onclick: () => select(key) },
      t(`machine.range.${key}`)));
  const csvButton = h("button", { type: "button", id: "csv", onclick: downloadCsv }, t("machine.csv"));
  root.append(
    h("div", { class: "toolbar" }, h("a", { class: "btn", href: "#/" }, t("machine.back"))),
    h("div", { class: "card-head" }, title, badge),
    h("h2", {}, t("machine.current")), current,
    h("div", { class: "toolbar" }, rangeButtons, custom, h("span", { class: "spacer" }), csvButton),
    note, charts,
  );

  let series = [];          // numeric series of this machine with a historian id
  let plots = [];           // { info, plot, data, el }
  let range = "1h";
  let window_ = null;       // { from, to } in ms, what is shown
  let refreshTimer = null;
  let retryTimer = null;
  let groupBy = ["line", "machine"];
  let disposed = false;

  function belongs(s) {
    if (measurement !== null) return s.measurement === measurement && groupBy.every((k) => !(k in s.tags));
    return groupBy.every((k) => s.tags[k] === tags[k]);
  }

  function showCurrent(overview) {
    groupBy = overview.group_by;
    const card = overview.cards.find((c) => c.id === cardId);
    if (!card) { badge.textContent = t("machine.notfound"); return; }
    badge.dataset.state = card.state;
    badge.textContent = t(`state.${card.state}`);
    badge.title = card.last_update ? t("age.updated", { age: formatAge(overview.server_time - card.last_update) }) : "";
    fill(current, card.values.flatMap((v) => [h("dt", {}, displayLabel(v)), valueCell(v, { dataset: { field: v.field, quality: v.quality || "good" } })]));
  }

  async function load() {
    const overview = await getJSON("/api/overview");
    if (disposed) return;
    showCurrent(overview);
    const query = measurement !== null
      ? `measurement=${encodeURIComponent(measurement)}`
      : Object.entries(tags).map(([k, v]) => `tag=${encodeURIComponent(`${k}=${v}`)}`).join("&");
    const all = await getJSON(`/api/series?${query}`);
    if (disposed) return;
    series = all.filter((s) => belongs(s) && s.id !== null && s.kind !== "str" && typeof s.last_value !== "string");
    // Charts in the card's order: key fields (overview.key_fields) first, then by label.
    const card = overview.cards.find((c) => c.id === cardId);
    const order = new Map((card ? card.values : []).map((v, i) => [seriesKey(v), i]));
    const rank = (s) => order.get(seriesKey(s)) ?? order.size;
    series.sort((a, b) => rank(a) - rank(b) || displayLabel(a).localeCompare(displayLabel(b)));
    if (!series.length) {
      // No historian at all, or nothing of this machine stored yet (then look again shortly).
      note.textContent = t(overview.history ? "machine.waiting" : "machine.nohistory");
      note.hidden = false;
      if (overview.history) retryTimer = setTimeout(() => load().catch(showError), 3000);
      return;
    }
    note.hidden = true;
    select(range);
  }

  function select(key) {
    range = key;
    for (const b of rangeButtons) b.setAttribute("aria-pressed", String(b.dataset.range === key));
    custom.hidden = key !== "custom";
    clearInterval(refreshTimer);
    if (key === "custom") {
      const now = Date.now();
      if (!fromInput.value) fromInput.value = toLocalInput(now - 3600e3);
      if (!toInput.value) toInput.value = toLocalInput(now);
      return;
    }
    draw();
    if (REFRESH[key]) refreshTimer = setInterval(draw, REFRESH[key]);
  }

  function applyCustom() {
    const from = new Date(fromInput.value).getTime();
    const to = new Date(toInput.value).getTime();
    if (Number.isFinite(from) && Number.isFinite(to) && to > from) draw({ from, to });
  }

  async function draw(fixed) {
    const to = fixed ? fixed.to : Date.now();
    const from = fixed ? fixed.from : to - RANGES[range];
    window_ = { from, to };
    const width = Math.max(240, (charts.clientWidth || root.clientWidth || 800));
    const points = Math.min(1000, Math.max(100, Math.round(width)));
    const results = await Promise.all(series.map((s) =>
      getJSON(`/api/series/${encodeURIComponent(s.id)}/range?from=${Math.floor(from)}&to=${Math.ceil(to)}&points=${points}`)
        .catch((e) => ({ error: String(e), series: s, buckets: [] }))));
    if (disposed) return;
    render(results);
  }

  // A chart's title: the field's label (overview.fields) in the page's language, the tags that
  // tell two series of one machine apart, and the unit: "Coolant temperature · °C".
  function label(s) {
    const extra = Object.entries(s.tags).filter(([k]) => !groupBy.includes(k)).map(([, v]) => v);
    return [displayLabel(s), ...extra, ...(s.unit ? [s.unit] : [])].join(" · ");
  }

  function render(results) {
    const keep = new Map(plots.map((p) => [p.info.id, p]));
    const next = [];
    for (const result of results) {
      const info = result.series;
      const times = result.buckets.map((b) => b.time / 1000);
      const data = [times, result.buckets.map((b) => b.mean), result.buckets.map((b) => b.min), result.buckets.map((b) => b.max)];
      let entry = keep.get(info.id);
      if (!entry) {
        const el = h("div", { class: "chart", dataset: { series: info.id } }, h("h3", {}, label(info)));
        charts.append(el);
        entry = { info, el, plot: null, data, rows: result.buckets };
      }
      keep.delete(info.id);
      entry.data = data;
      entry.rows = result.buckets;
      const empty = times.length === 0;
      let nodata = entry.el.querySelector(".nodata");
      if (empty && !nodata) { nodata = h("div", { class: "nodata" }, t("machine.nodata")); entry.el.append(nodata); }
      if (!empty && nodata) nodata.remove();
      entry.el.dataset.points = String(times.length);
      if (!entry.plot) entry.plot = makePlot(entry.el, label(info), data, info);
      else entry.plot.setData(data);
      entry.plot.setScale("x", { min: window_.from / 1000, max: window_.to / 1000 });
      next.push(entry);
    }
    for (const gone of keep.values()) { gone.plot?.destroy(); gone.el.remove(); }
    plots = next;
  }

  function makePlot(el, name, data, info) {
    const width = Math.max(240, el.clientWidth - 12);
    const shown = (u, v) => (v == null ? "–" : formatValue(v, info));
    return new uPlot({
      width, height: 220,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      series: [
        { label: t("machine.time"), value: (u, v) => (v == null ? "–" : formatTime(v * 1000)) },
        { label: name, stroke: "#1d4ed8", width: 2, value: shown },
        { label: "min", stroke: "#93c5fd", width: 1, value: shown },
        { label: "max", stroke: "#93c5fd", width: 1, value: shown },
      ],
      bands: [{ series: [3, 2], fill: "rgba(29, 78, 216, 0.08)" }],
      axes: [{ values: timeTicks }, { size: 60, values: (u, ticks) => ticks.map((v) => formatNumber(v)) }],
    }, data, el);
  }

  function timeTicks(u, ticks) {
    const span = (u.scales.x.max ?? 0) - (u.scales.x.min ?? 0);
    const options = span > 2 * 86400 ? { day: "2-digit", month: "2-digit" }
      : span > 86400 ? { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit" }
      : { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    const format = new Intl.DateTimeFormat(lang() === "it" ? "it-IT" : "en-GB", options);
    return ticks.map((v) => format.format(new Date(v * 1000)));
  }

  function downloadCsv() {
    if (!window_) return;
    const lines = ["time,measurement,tags,field,mean,min,max,count,label,unit"];
    const quote = (text) => `"${String(text).replace(/"/g, '""')}"`;
    for (const p of plots) {
      const tagText = Object.entries(p.info.tags).map(([k, v]) => `${k}=${v}`).join(";");
      for (const b of p.rows) {
        lines.push([new Date(b.time).toISOString(), quote(p.info.measurement), quote(tagText), quote(p.info.field),
          b.mean ?? "", b.min ?? "", b.max ?? "", b.count, quote(displayLabel(p.info)), quote(p.info.unit || "")].join(","));
      }
    }
    const blob = new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" });
    const stamp = new Date(window_.from).toISOString().slice(0, 16).replace(/[:T]/g, "");
    const a = h("a", { href: URL.createObjectURL(blob), download: `${(title.textContent || "machine").replace(/[^\w.-]+/g, "_")}-${stamp}.csv` });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  function onResize() {
    for (const p of plots) p.plot?.setSize({ width: Math.max(240, p.el.clientWidth - 12), height: 220 });
  }

  window.addEventListener("resize", onResize);
  const unsubscribe = subscribe("overview", showCurrent);
  function showError(e) { note.textContent = String(e); note.hidden = false; }
  load().catch(showError);
  return () => {
    disposed = true;
    clearInterval(refreshTimer);
    clearTimeout(retryTimer);
    unsubscribe();
    window.removeEventListener("resize", onResize);
    for (const p of plots) p.plot?.destroy();
  };
}
