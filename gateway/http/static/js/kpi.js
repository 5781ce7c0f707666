// OEE of a machine configured under `machines:` (the KPI engine's API): availability,
// performance, quality and OEE for this shift (live over SSE), today and the shown range; the
// time per state category; parts per hour against the ideal rate. A ratio the engine cannot
// compute (a zero denominator: null) reads "no data", never 0 %.

import { getJSON, subscribe } from "./api.js";
import { h, fill } from "./dom.js";
import { t, formatPercent, formatNumber, formatDuration, formatClock, dateFormat } from "./i18n.js";
import { CATEGORIES, categoryOf } from "./timeline.js";
import { tickDecimals } from "./charts.js";

/** A time from the API as Unix ms: the ``*_ms`` twin when there is one, else ms, seconds or ISO 8601. */
export function toMs(value) {
  if (value === null || value === undefined || value === "") return null;
  if (typeof value === "number") return value < 1e11 ? value * 1000 : value;
  const parsed = Date.parse(value);
  return Number.isFinite(parsed) ? parsed : null;
}

function span(item) {
  return { from: item.from_ms ?? toMs(item.from), to: item.to_ms ?? toMs(item.to) };
}

let machinesCache = null; // { at, promise }

/** Every configured machine now (GET /api/machines): state, category, since when, today's and the
 *  current shift's KPIs. Empty when the gateway has no `machines:`. */
export function machines({ fresh = false } = {}) {
  if (!fresh && machinesCache && Date.now() - machinesCache.at < 5000) return machinesCache.promise;
  const promise = getJSON("/api/machines").then((data) => (Array.isArray(data) ? data : [])).catch(() => []);
  machinesCache = { at: Date.now(), promise };
  return promise;
}

/** Whether a configured machine is the one a card shows: every tag of its `tags:` is the card's
 *  (a machine without tags: its name is the card's machine tag). */
export function matches(m, cardId, tags) {
  if (!m) return false;
  const own = m.tags || {};
  if (Object.keys(own).length) return Object.entries(own).every(([k, v]) => tags[k] === String(v));
  return m.name === Object.values(tags).at(-1);
}

export async function findMachine(cardId, tags) {
  return (await machines({ fresh: true })).find((m) => matches(m, cardId, tags)) || null;
}

/** The machine's state now: { value, category, since (ms) }, or null. */
export function currentState(m) {
  if (!m || !m.category) return null;
  return { value: m.value, category: m.category, since: m.since_ms ?? toMs(m.since) };
}

/** Today's OEE of a machine of /api/machines (null: not computable, e.g. nothing planned yet). */
export function todayOee(m) {
  return m && m.today ? m.today.oee ?? null : null;
}

export function stateBadge(state) {
  const category = state.category || categoryOf(state.value) || "unknown";
  const text = t(`cat.${category}`);
  const raw = state.value === undefined || state.value === null ? "" : String(state.value);
  return { text, title: raw && raw.toLowerCase() !== category ? `${text} (${raw})` : text };
}

function base(m) { return `/api/machines/${encodeURIComponent(m.name)}`; }

/** The state intervals between two times, as timeline segments (gaps come as no_data). */
export async function fetchStates(m, from, to) {
  const data = await getJSON(`${base(m)}/states?from=${Math.floor(from)}&to=${Math.ceil(to)}`);
  const segments = (data.intervals || []).map((s) => ({ ...span(s), value: s.value, category: s.category || "unknown" }))
    .filter((s) => s.from !== null && s.to !== null && s.to > s.from);
  segments.shifts = (data.shifts || []).map((w) => ({ ...span(w), name: w.name }));
  return segments;
}

export async function fetchKpi(m, from, to, by = null) {
  return getJSON(`${base(m)}/kpi?from=${Math.floor(from)}&to=${Math.ceil(to)}${by ? `&by=${by}` : ""}`);
}

/** Running seconds and parts the ratios use: those inside the shifts when the machine has shifts. */
function planned(kpi) {
  const inside = kpi.in_shifts;
  return inside ? { running: inside.seconds.running, parts: inside.parts } : { running: kpi.seconds?.running, parts: kpi.parts };
}

/** The machine's ideal rate in parts per hour: from its ideal cycle time when the API gives it,
 *  else from a period's performance (performance = ideal cycle time × parts / running time). */
export function idealRate(m, period) {
  const cycle = m.ideal_cycle_seconds ?? m.ideal_cycle_time_s ?? m.ideal_cycle_time;
  if (typeof cycle === "number" && cycle > 0) return 3600 / cycle;
  if (!period || !(period.performance > 0) || period.performance >= 1) return null; // (1: capped, unknown)
  const { running, parts } = planned(period);
  return parts > 0 && running > 0 ? (3600 * parts) / (period.performance * running) : null;
}

const PERIODS = ["shift", "today", "range"];

export class KpiPanel {
  /** machine: the machine as /api/machines gives it; serverNow: the gateway's clock (ms);
   *  onState: told the machine's state (value, category, since) at every update. */
  constructor(machine, { serverNow, onState }) {
    this.machine = machine;
    this.serverNow = serverNow;
    this.onState = onState;
    this.cards = {};
    this.range = null;
    this.rangeAt = 0;
    this.pphAt = 0;
    this.timers = [];
    this.error = h("p", { class: "kpi-error", hidden: true, role: "status" });
    for (const period of PERIODS) this.cards[period] = this.makeCard(period);
    this.pphTitle = h("h3", {}, t("kpi.pph"));
    this.pphLegend = h("div", { class: "pph-legend" });
    this.pphNoData = h("div", { class: "nodata", hidden: true }, t("kpi.nodata"));
    this.pphArea = h("div", { class: "plot" }, this.pphNoData);
    this.pph = h("div", { class: "chart pph", id: "kpi-pph", dataset: { points: "0" } }, this.pphTitle, this.pphLegend, this.pphArea);
    this.pph.hidden = !machine.today || machine.today.parts === null; // a machine without a parts counter
    this.plot = null;
    this.el = h("section", { class: "kpi", id: "kpi", "aria-label": t("kpi.title") },
      h("div", { class: "kpi-cards" }, PERIODS.map((p) => this.cards[p].el)), this.error, this.pph);
    this.resizeObserver = new ResizeObserver(() => this.plot?.setSize({ width: Math.max(240, this.pphArea.clientWidth), height: 180 }));
    this.resizeObserver.observe(this.pph);
  }

  makeCard(period) {
    const title = h("h2", {}, t(`kpi.${period}`));
    const when = h("span", { class: "kpi-span muted" }, "");
    const oee = h("span", { class: "oee-value", dataset: { kpi: "oee" } }, "–");
    const meters = {};
    const apq = h("dl", { class: "apq" }, ["availability", "performance", "quality"].map((key) => {
      const bar = h("span", { class: "meter-fill" });
      const value = h("dd", { dataset: { kpi: key } }, "–");
      meters[key] = { bar, value };
      return h("div", { class: "apq-row" }, h("dt", {}, t(`kpi.${key}`)), h("span", { class: "meter", "aria-hidden": "true" }, bar), value);
    }));
    const parts = h("div", { class: "kpi-parts", dataset: { kpi: "parts" } }, "");
    const catbar = h("div", { class: "catbar", "aria-hidden": "true" });
    const catlist = h("ul", { class: "catlist", "aria-label": t("kpi.time") });
    const warning = h("span", { class: "kpi-warning", lang: "en", role: "img", tabindex: "0", hidden: true }, "⚠");
    const el = h("article", { class: "kpi-card", id: `kpi-${period}`, dataset: { period, state: "loading" } },
      h("header", {}, h("span", { class: "kpi-title" }, title, warning), when),
      h("div", { class: "oee" }, h("span", { class: "oee-label" }, t("kpi.oee")), oee),
      apq, parts, catbar, catlist);
    return { el, title, when, oee, meters, parts, catbar, catlist, warning };
  }

  start() {
    this.apply(this.machine);
    // The live stream brings every machine every 2 s; a poll keeps the figures fresh without it.
    this.unsubscribe = subscribe("kpi", (list) => {
      const found = Array.isArray(list) ? list.find((m) => m.name === this.machine.name) : null;
      if (found) { this.liveAt = Date.now(); this.apply(found); }
    });
    this.timers.push(setInterval(async () => {
      if (Date.now() - (this.liveAt || 0) < 20e3) return;
      const found = (await machines({ fresh: true })).find((m) => m.name === this.machine.name);
      if (found && !this.stopped) this.apply(found);
    }, 20e3));
  }

  stop() {
    for (const timer of this.timers) clearInterval(timer);
    this.unsubscribe?.();
    this.resizeObserver.disconnect();
    this.plot?.destroy();
    this.stopped = true;
  }

  fail(e) {
    this.error.textContent = t("kpi.unavailable", { error: String(e.message || e) });
    this.error.hidden = false;
  }

  /** The machine now (api/machines, or a kpi event): the state, this shift's and today's KPIs. */
  apply(m) {
    this.machine = { ...this.machine, ...m };
    this.error.hidden = true;
    this.onState(currentState(m));
    const shift = m.shift;
    const shiftCard = this.cards.shift;
    shiftCard.title.textContent = shift ? t("kpi.shift.named", { name: shift.name }) : t("kpi.shift");
    this.render("shift", shift ? shift.kpi : null, shift ? span(shift) : null);
    if (!shift) shiftCard.when.textContent = t("kpi.noshift");
    this.render("today", m.today || null);
    if (!this.pphFromRange && Date.now() - this.pphAt > 60e3) this.drawPph();
  }

  /** The shown range changed (or slid on): its KPIs, at most every 10 s while it slides. */
  async setRange(from, to, fixed) {
    const same = this.range && this.range.from === from && this.range.to === to;
    if (same || (!fixed && this.range && !this.range.fixed && Date.now() - this.rangeAt < 10e3)) return;
    const changed = !this.range || this.range.fixed !== fixed || Math.abs(this.range.to - this.range.from - (to - from)) > 1000;
    this.range = { from, to, fixed };
    this.rangeAt = Date.now();
    try {
      const data = await fetchKpi(this.machine, from, to);
      if (this.stopped) return;
      this.rangeData = data;
      this.render("range", data);
      this.pphFromRange = to - from >= 3 * 3600e3;
      if (this.pphFromRange || changed) this.drawPph();
    } catch (e) { this.fail(e); }
  }

  /** One card's figures (a KpiOut), or "no data" everywhere. ``window`` is what the header shows
   *  (the shift's planned window); else the figures' own range. */
  render(period, data, window = null) {
    const card = this.cards[period];
    card.el.dataset.state = data ? "ready" : "nodata";
    const shown = window || (data ? span(data) : null);
    card.when.textContent = shown && shown.from !== null && shown.to !== null
      ? t("kpi.span", { from: formatClock(shown.from), to: formatClock(shown.to) }) : "";
    const oee = data ? data.oee ?? null : null;
    card.oee.textContent = formatPercent(oee);
    card.oee.dataset.value = oee ?? "";
    card.oee.classList.toggle("none", oee === null);
    card.el.dataset.oee = oee ?? "";
    for (const [key, { bar, value }] of Object.entries(card.meters)) {
      const ratio = data ? data[key] ?? null : null;
      value.textContent = formatPercent(ratio);
      value.dataset.value = ratio ?? "";
      bar.style.width = `${Math.max(0, Math.min(1, ratio ?? 0)) * 100}%`;
      bar.parentElement.dataset.nodata = String(ratio === null);
    }
    if (data && typeof data.parts === "number") {
      fill(card.parts, h("strong", {}, t("kpi.parts", { parts: formatNumber(data.parts, 0) })),
        typeof data.good === "number" ? ` · ${t("kpi.good", { good: formatNumber(data.good, 0) })}` : "",
        typeof data.scrap === "number" ? ` · ${t("kpi.scrap", { scrap: formatNumber(data.scrap, 0) })}` : "");
    } else {
      card.parts.textContent = data ? t("kpi.noparts") : "";
    }
    const seconds = (data && data.seconds) || {};
    const total = CATEGORIES.reduce((sum, c) => sum + (seconds[c] || 0), 0);
    const present = CATEGORIES.filter((c) => seconds[c] > 0);
    fill(card.catbar, present.map((c) =>
      h("span", { class: "catbar-seg", dataset: { cat: c }, style: `width:${((seconds[c] / total) * 100).toFixed(2)}%`, title: t(`cat.${c}`) })));
    // Every category, always (a category appearing must not move the page); those without time muted.
    fill(card.catlist, CATEGORIES.map((c) => {
      const value = seconds[c] || 0;
      return h("li", { dataset: { cat: c, zero: String(value === 0) } }, h("i", { class: "swatch", dataset: { cat: c } }),
        h("span", { class: "cat-name" }, t(`cat.${c}`)),
        h("span", { class: "cat-time" }, value ? formatDuration(value) : "–"),
        h("span", { class: "cat-share muted" }, !value || !total ? "" : value / total < 0.005 ? `< ${formatPercent(0.01, 0)}` : formatPercent(value / total, 0)));
    }));
    // What a plant engineer should know about these numbers (the engine's words, in English).
    const warnings = data && data.warnings ? data.warnings : [];
    card.warning.hidden = warnings.length === 0;
    card.warning.title = warnings.join("\n");
    card.warning.setAttribute("aria-label", warnings.join(". "));
  }

  /** Parts per hour, hour by hour, against the ideal rate: the shown range when it is 3 h or
   *  longer, else today. */
  async drawPph() {
    this.pphAt = Date.now();
    const now = this.serverNow();
    const useRange = this.pphFromRange && this.range;
    const from = useRange ? this.range.from : (this.machine.today ? span(this.machine.today).from : now - 86400e3);
    const to = useRange ? Math.min(this.range.to, now) : now;
    if (!(to > from)) return;
    let report;
    try {
      report = await fetchKpi(this.machine, from, to, "hour");
    } catch (e) { this.fail(e); return; }
    if (this.stopped) return;
    const ideal = idealRate(this.machine, report) ?? idealRate(this.machine, this.machine.today);
    const times = [];
    const made = [];
    for (const row of report.rows || []) {
      const { from: start, to: rowEnd } = span(row);
      const end = Math.min(rowEnd ?? start + 3600e3, now);
      if (start === null || end - start < 60e3 || typeof row.parts !== "number") continue;
      const unseen = row.seconds ? row.seconds.no_data >= (end - start) / 1000 - 1 : false;
      times.push(start / 1000);
      made.push(unseen ? null : (row.parts / (end - start)) * 3600e3); // an hour without data: no bar, not 0
    }
    if (made.every((v) => v === null)) { times.length = 0; made.length = 0; }
    this.pph.dataset.points = String(made.filter((v) => v !== null).length);
    this.pph.hidden = report.parts === null || report.parts === undefined; // no parts counter: nothing to chart
    this.pph.dataset.ideal = ideal === null ? "" : String(ideal);
    this.pphTitle.textContent = `${t("kpi.pph")} · ${t(useRange ? "kpi.range" : "kpi.today")}`;
    fill(this.pphLegend,
      h("span", { class: "pph-key" }, h("i", { class: "swatch actual" }), t("kpi.pph.actual")),
      ideal === null ? null : h("span", { class: "pph-key", id: "pph-ideal" }, h("i", { class: "swatch ideal" }),
        t("kpi.pph.ideal", { rate: `${formatNumber(ideal, 0)}/h` })));
    this.pphNoData.hidden = times.length > 0;
    const data = [times, made, times.map(() => ideal)];
    this.pphRange = [from / 1000, Math.max(to, from + 3600e3) / 1000];
    this.idealNow = ideal;
    if (!this.plot) {
      const format = (v, incr) => formatNumber(v, tickDecimals(incr));
      this.plot = new uPlot({
        width: Math.max(240, this.pphArea.clientWidth || 600),
        height: 180,
        legend: { show: false },
        cursor: { y: false, drag: { x: false, y: false } },
        scales: {
          x: { time: true, range: () => this.pphRange },
          y: { range: (u, min, max) => [0, Math.max(1, max ?? 1, this.idealNow ?? 0) * 1.1] },
        },
        series: [{}, {
          stroke: "#1d4ed8", fill: "rgba(29, 78, 216, 0.55)", width: 1,
          paths: uPlot.paths.bars({ size: [0.8, 48], align: 1 }), points: { show: false },
        }, { stroke: "#111827", width: 2, dash: [6, 4], points: { show: false } }],
        axes: [
          { space: 60, values: (u, ticks) => ticks.map((v) => dateFormat({ hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(new Date(v * 1000))) },
          { size: 56, values: (u, ticks, axis, space, incr) => ticks.map((v) => format(v, incr)) },
        ],
      }, data, this.pphArea);
    } else {
      this.plot.setData(data);
    }
  }
}
