// Numeric charts of the machine page (uPlot): a measured value as its mean with the min–max band
// of each bucket, or a counter (parts, shots, packs) as its rate per hour. Above the plot, one
// readout line: the range's last / min / max, or the bucket under the cursor — never a row of
// placeholder dashes. The y axis fits the data (a constant count is not drawn on 0–100); the
// arrow keys move the cursor for keyboard users.

import { h } from "./dom.js";
import { t, formatNumber, formatValue, formatClock, displayLabel, labelLang, dateFormat } from "./i18n.js";

const HEIGHT = 200;
const COUNTER_WORDS = new Set(["parts", "part", "pieces", "count", "counter", "shots", "cycles", "packs", "starts",
  "scrap", "rejected", "rejects", "revolutions", "produced", "good"]);
const NOT_COUNTER = new Set(["time", "rate", "speed", "per", "setpoint", "target", "number", "id", "no", "code",
  "type", "pct", "percent", "hours"]);

/** A counter: an integer field named like one (parts, shots, packs_good, cycle_count …). */
export function isCounter(s) {
  if (s.kind !== "int") return false;
  const words = s.field.toLowerCase().split(/[_\-.\s]+/);
  return words.some((w) => COUNTER_WORDS.has(w)) && !words.some((w) => NOT_COUNTER.has(w));
}

/** The request for a counter's buckets over [from, to]: about 60 buckets of one width — a whole
 *  number of minutes, at least one — ending at ``to``. The historian's width is
 *  (to − from) / (points − 1) + 1 ns, rounded up to whole minutes from a minute on; asking for a span
 *  of n widths less 1 ms makes it exactly the width wanted (just under a minute for one-minute
 *  buckets: read from raw samples), so a part every 30 s reads 120/h in every bucket, not 61 and 122. */
export function counterWindow(from, to) {
  const end = Math.ceil(to);
  const span = end - Math.floor(from);
  const target = Math.max(60e3, Math.ceil(span / 60 / 60e3) * 60e3);
  const n = Math.max(1, Math.ceil(span / target));
  const start = end - (n * target - 1);
  return { from: start, to: end, points: n + 1, width: bucketWidth(start, end, n + 1) };
}

/** Digits a tick label needs for ticks ``incr`` apart (0.05 → 2, 0.25 → 2, 2.5 → 1), so every
 *  label reads as the value it marks. */
export function tickDecimals(incr) {
  if (!(incr > 0)) return 0;
  for (let digits = 0; digits < 6; digits++) {
    const scaled = incr * 10 ** digits;
    if (Math.abs(scaled - Math.round(scaled)) < 1e-6 * scaled) return digits;
  }
  return 6;
}

/** The bucket width (ms) the historian uses for [from, to] (integer ms) in ``points`` buckets
 *  (gateway/sinks/historian/_range.py, in nanoseconds). */
export function bucketWidth(from, to, points) {
  if (points <= 1) return to - from;
  const ns = Math.floor(((to - from) * 1e6) / (points - 1)) + 1;
  return ns >= 60e9 ? Math.ceil(ns / 60e9) * 60e3 : ns / 1e6;
}

/** A counter's increase per bucket as a rate per hour: steps at bucket starts, null over gaps.
 *  The bucket still filling (the current minute) counts in the total, not as a rate. */
export function counterRates(buckets, width, to) {
  const times = [];
  const rates = [];
  let total = 0;
  let lastRate = null;
  for (let i = 0; i < buckets.length; i++) {
    const b = buckets[i];
    if (typeof b.last !== "number") continue;
    const previous = i > 0 && b.time - buckets[i - 1].time <= width * 1.5 ? buckets[i - 1].last : null;
    let delta = typeof previous === "number" ? b.last - previous : b.last - (b.min ?? b.last);
    if (delta < 0) delta = Math.max(0, b.last - (b.min ?? b.last)); // the counter was reset
    total += delta;
    const start = b.time;
    const aligned = Math.floor(b.time / width) * width;
    const end = Math.min(aligned + width, to);
    if (end - start < width * 0.5) continue; // too short to be a rate (the current bucket, a clipped edge)
    if (times.length && start - times.at(-1) > width * 1.5) { times.push(times.at(-1) + width); rates.push(null); }
    const rate = (delta / (end - start)) * 3600e3;
    times.push(start);
    rates.push(rate);
    // "last": the last full bucket (a part of one reads 1 part in 45 s as 80/h, 2 as 160/h)
    if (end - start >= width * 0.95 || lastRate === null) lastRate = rate;
  }
  if (times.length) { times.push(Math.min(times.at(-1) + width, to)); rates.push(rates.at(-1)); }
  return { times, rates, total, lastRate };
}

/** The y range: padded around the data; a constant value gets a small span around it (a count of
 *  3 shows 2–4, not 0–100); a positive series does not dip below zero. */
export function yRange(min, max, integer) {
  if (min === null || max === null || !Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (min === max) {
    const pad = integer ? 1 : Math.abs(min) * 0.1 || 1;
    const lo = min >= 0 && min - pad < 0 ? 0 : min - pad;
    return [lo, max + pad];
  }
  const pad = (max - min) * 0.08;
  let lo = min - pad;
  let hi = max + pad;
  if (min >= 0 && lo < 0) lo = 0;
  if (integer) { lo = Math.floor(lo); hi = Math.ceil(hi); }
  return [lo, hi];
}

const INTEGER_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

export class Chart {
  /** info: the series (api/series); mode: "value" or "rate"; title: the heading text. */
  constructor(info, { mode, title, syncKey, onCursor }) {
    this.info = info;
    this.mode = mode;
    this.window = { from: 0, to: 1 };
    this.onCursor = onCursor || (() => {});
    this.summary = "";
    this.plot = null;
    this.rows = [];
    const heading = h("h3", { lang: labelLang(info) || null }, title);
    this.readout = h("div", { class: "readout" }, "");
    this.nodata = h("div", { class: "nodata", hidden: true }, t("machine.nodata"));
    this.area = h("div", { class: "plot", tabindex: "0", "aria-label": `${title}. ${t("chart.keys")}` }, this.nodata);
    this.el = h("div", { class: "chart", dataset: { series: info.id, mode, field: info.field, points: "0" } },
      heading, this.readout, this.area);
    this.syncKey = syncKey;
    this.area.addEventListener("keydown", (e) => this.key(e));
    this.area.addEventListener("blur", () => this.plot?.setCursor({ left: -10, top: -10 }));
  }

  /** New data for the window { from, to } (ms); ``dataEnd``: where the machine's data ends (its
   *  last update), so a counter's last bucket is not read as a rate of 0 after it. */
  update(buckets, window, width, dataEnd = Infinity) {
    this.window = window;
    this.rows = buckets;
    this.el.dataset.buckets = String(buckets.length); // rows of this chart in the CSV
    let data;
    if (this.mode === "rate") {
      const rates = counterRates(buckets, width, Math.min(window.to, Date.now(), dataEnd));
      this.rates = rates;
      data = [rates.times.map((x) => x / 1000), rates.rates];
      const total = `+${formatNumber(rates.total, 0)}`;
      this.summary = !buckets.length ? ""
        : rates.lastRate === null ? t("chart.rate.total", { total })
        : t("chart.rate.summary", { last: this.rateText(rates.lastRate), total });
      this.el.dataset.points = String(rates.rates.filter((r) => r !== null).length);
    } else {
      data = [buckets.map((b) => b.time / 1000), buckets.map((b) => b.mean), buckets.map((b) => b.min), buckets.map((b) => b.max)];
      let lo = null;
      let hi = null;
      for (const b of buckets) {
        if (b.min !== null && (lo === null || b.min < lo)) lo = b.min;
        if (b.max !== null && (hi === null || b.max > hi)) hi = b.max;
      }
      const last = buckets.length ? buckets.at(-1).last ?? buckets.at(-1).mean : null;
      this.summary = buckets.length
        ? t("chart.summary", { last: formatValue(last, this.info), min: formatValue(lo, { decimals: this.info.decimals }), max: formatValue(hi, { decimals: this.info.decimals }) })
        : "";
      this.el.dataset.points = String(buckets.length);
    }
    this.nodata.hidden = data[0].length > 0;
    this.nodata.textContent = t(this.mode === "rate" && buckets.length ? "chart.rate.wait" : "machine.nodata");
    if (!this.plot) this.plot = this.make(data);
    else this.plot.setData(data);
    if (this.plot.cursor.idx === null || this.plot.cursor.idx === undefined) this.showSummary();
  }

  rateText(rate) {
    if (rate === null || rate === undefined) return "–";
    return `${formatNumber(rate, rate < 10 && !Number.isInteger(rate) ? 1 : 0)}${t("chart.rate.unit")}`;
  }

  showSummary() {
    this.readout.textContent = this.summary;
    this.readout.title = this.summary;
    this.readout.dataset.cursor = "false";
  }

  make(data) {
    const integer = this.mode === "value" && (this.info.kind === "int" || this.info.kind === "bool");
    const shown = (v, incr) => formatNumber(v, integer ? 0 : tickDecimals(incr));
    const width = Math.max(240, this.area.clientWidth || 400);
    const series = this.mode === "rate"
      ? [{}, { stroke: "#1d4ed8", width: 2, fill: "rgba(29, 78, 216, 0.15)", paths: uPlot.paths.stepped({ align: 1 }), points: { show: false } }]
      : [{}, { stroke: "#1d4ed8", width: 2 }, { stroke: "#93c5fd", width: 1 }, { stroke: "#93c5fd", width: 1 }];
    return new uPlot({
      width,
      height: HEIGHT,
      legend: { show: false },
      cursor: {
        y: false,
        drag: { x: false, y: false },
        sync: { key: this.syncKey },
        points: { size: 7 },
      },
      scales: {
        x: { time: true, range: () => [this.window.from / 1000, this.window.to / 1000] },
        y: {
          range: (u, min, max) => (this.mode === "rate" ? yRange(0, max ?? 0, false) : yRange(min, max, integer)),
        },
      },
      series,
      bands: this.mode === "value" ? [{ series: [3, 2], fill: "rgba(29, 78, 216, 0.10)" }] : [],
      axes: [
        { values: (u, ticks) => axisTimes(u, ticks), space: 72, grid: { stroke: "#eef0f3" } },
        {
          size: 64, values: (u, ticks, axis, space, incr) => ticks.map((v) => shown(v, incr)),
          incrs: integer ? INTEGER_INCRS : undefined, grid: { stroke: "#eef0f3" },
        },
      ],
      hooks: {
        setCursor: [(u) => this.cursorMoved(u)],
        setScale: [(u, key) => {
          if (key !== "y") return;
          this.el.dataset.ymin = String(u.scales.y.min);
          this.el.dataset.ymax = String(u.scales.y.max);
        }],
      },
    }, data, this.area);
  }

  cursorMoved(u) {
    const idx = u.cursor.idx;
    if (idx === null || idx === undefined || u.data[0][idx] === undefined) {
      this.showSummary();
      this.onCursor(null);
      return;
    }
    const time = u.data[0][idx] * 1000;
    let text;
    if (this.mode === "rate") {
      text = `${formatClock(time)} · ${this.rateText(u.data[1][idx])}`;
    } else {
      const b = this.rows[idx];
      const spread = b && b.min !== null && b.max !== null && b.min !== b.max
        ? ` (${formatValue(b.min, { decimals: this.info.decimals })}–${formatValue(b.max, { decimals: this.info.decimals })})` : "";
      text = `${formatClock(time, { seconds: this.window.to - this.window.from <= 3 * 3600e3 })} · ${formatValue(b ? b.mean ?? b.last : null, this.info)}${spread}`;
    }
    this.readout.textContent = text;
    this.readout.title = text;
    this.readout.dataset.cursor = "true";
    if (u.cursor.event !== null && u.cursor.event !== undefined) this.onCursor(time);
  }

  /** Put the cursor on the bucket nearest ``time`` (ms), or take it away (null). */
  showTime(time) {
    const u = this.plot;
    if (!u) return;
    if (time === null || !u.data[0].length) { u.setCursor({ left: -10, top: -10 }); return; }
    const left = u.valToPos(time / 1000, "x");
    u.setCursor({ left, top: u.bbox.height / devicePixelRatio / 2 });
  }

  key(event) {
    const u = this.plot;
    if (!u || !u.data[0].length) return;
    const n = u.data[0].length;
    const step = event.shiftKey ? 10 : 1;
    const current = u.cursor.idx ?? n;
    const moves = { ArrowLeft: current - step, ArrowRight: current + step, Home: 0, End: n - 1 };
    if (event.key === "Escape") { u.setCursor({ left: -10, top: -10 }); return; }
    if (!(event.key in moves)) return;
    event.preventDefault();
    const idx = Math.min(n - 1, Math.max(0, event.key === "ArrowRight" && u.cursor.idx === null ? 0 : moves[event.key]));
    u.setCursor({ left: u.valToPos(u.data[0][idx], "x"), top: u.bbox.height / devicePixelRatio / 2 });
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: Math.max(240, this.area.clientWidth), height: HEIGHT });
  }

  destroy() { this.plot?.destroy(); this.el.remove(); }
}

/** The chart title: label (in the page's language), the tags telling two series apart, the unit. */
export function chartTitle(s, groupBy, mode) {
  const extra = Object.entries(s.tags).filter(([k]) => !groupBy.includes(k)).map(([, v]) => v);
  const label = mode === "rate" ? t("chart.rate.title", { label: displayLabel(s) }) : displayLabel(s);
  return [label, ...extra, ...(s.unit && mode !== "rate" ? [s.unit] : [])].join(" · ");
}

function axisTimes(u, ticks) {
  const span = (u.scales.x.max ?? 0) - (u.scales.x.min ?? 0);
  const options = span > 2 * 86400 ? { day: "2-digit", month: "2-digit" }
    : span > 86400 ? { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
    : span < 300 ? { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" }
    : { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  const format = dateFormat(options);
  return ticks.map((v) => format.format(new Date(v * 1000)));
}


