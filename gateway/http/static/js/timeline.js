// State bands: one row per state-like series (the machine's KPI states, enum and text fields),
// coloured per category or value, on one time axis. Hover or the arrow keys show a segment's
// value, duration and times; each row's legend names every value with its total time, so the
// colours are never the only cue (and the palette reads for colour-blind visitors too).

import { h, fill } from "./dom.js";
import { t, formatDuration, formatClock, dateFormat } from "./i18n.js";

/** KPI categories, in the order of the API (docs/KPI.md). */
export const CATEGORIES = ["running", "idle", "down", "setup", "planned_stop", "unknown", "no_data"];

// Words a machine's state field says, mapped to the nearest category (like the overview's badge,
// but with setup and planned stops apart).
const WORDS = new Map();
for (const [category, words] of Object.entries({
  running: ["running", "run", "production", "producing", "active", "auto", "automatic", "working", "busy", "cycle", "in lavoro"],
  idle: ["idle", "stopped", "stop", "standby", "ready", "paused", "pause", "waiting", "off", "manual"],
  setup: ["setup", "changeover", "tooling", "retooling"],
  planned_stop: ["planned_stop", "plannedstop", "break", "maintenance", "cleaning"],
  down: ["alarm", "fault", "error", "emergency", "estop", "failure", "failed", "down", "blocked", "jam"],
})) for (const word of words) WORDS.set(word.replace(/[-_ ]/g, ""), category);

/** The category a state value stands for, or null (text we cannot place: it gets a colour of its own). */
export function categoryOf(value) {
  if (typeof value === "string") return WORDS.get(value.trim().toLowerCase().replace(/[-_ ]/g, "")) || null;
  if (typeof value === "number" && Number.isInteger(value)) return { 0: "idle", 1: "running", 2: "down" }[value] || null;
  return null;
}

// Paul Tol's "bright" scheme (distinct for every kind of colour blindness), for values that are
// not a category: programs, recipes, unknown state words.
const PALETTE = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb"];
const BOOLEAN = { true: "#0072b2", false: "#d1d5db" };

function inkFor(hex) {
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  const luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) ? "#111827" : "#ffffff";
}

/** Segments of one field from range buckets (each bucket's last value holds until the next one).
 *  ``initial`` is the value in force at ``from`` (the last one before it), ``end`` where the data
 *  stops (the machine's last update), never beyond ``to``. */
export function segmentsFromBuckets(buckets, initial, from, to, end) {
  const stop = Math.min(to, end);
  const segments = [];
  let current = initial === null || initial === undefined ? null : { from, value: initial };
  for (const b of buckets) {
    const value = b.last;
    if (value === null || value === undefined || b.time > stop) continue;
    if (current && current.value === value) continue;
    if (current && b.time > current.from) segments.push({ from: current.from, to: b.time, value: current.value });
    current = { from: Math.max(from, b.time), value };
  }
  if (current && stop > current.from) segments.push({ from: current.from, to: stop, value: current.value });
  return segments;
}

/** Tick times for an axis ``width`` px wide: about one label every 100 px, on round local times. */
export function timeTicks(from, to, width) {
  const span = to - from;
  const steps = [10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3,
    21600e3, 43200e3, 86400e3, 172800e3, 604800e3];
  const wanted = Math.max(2, Math.floor(width / 100));
  const step = steps.find((s) => span / s <= wanted) || steps.at(-1);
  const offset = -new Date(from).getTimezoneOffset() * 60e3;
  const ticks = [];
  for (let tick = Math.ceil((from + offset) / step) * step - offset; tick <= to; tick += step) ticks.push(tick);
  return { ticks, step };
}

export function tickLabel(ms, step, span) {
  if (step >= 86400e3) return dateFormat({ day: "2-digit", month: "2-digit" }).format(new Date(ms));
  const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (step < 60e3) options.second = "2-digit";
  if (span > 86400e3) { options.day = "2-digit"; options.month = "2-digit"; }
  return dateFormat(options).format(new Date(ms));
}

let uid = 0;

export class Timeline {
  constructor() {
    this.id = `tl${++uid}`;
    this.from = 0;
    this.to = 1;
    this.rows = new Map(); // row id → { el, track, legend, cursor, data }
    this.colours = new Map(); // row id → Map(value → colour)
    this.hoverListeners = new Set();
    this.tip = h("div", { class: "tl-tip", role: "status", "aria-live": "polite", id: `${this.id}-tip`, hidden: true });
    this.body = h("div", { class: "tl-rows" });
    this.axis = h("div", { class: "tl-axis", "aria-hidden": "true" });
    this.marks = h("div", { class: "tl-shifts", hidden: true });
    this.markers = []; // shifts: { from, to, label }
    this.el = h("section", { class: "timeline", id: "timeline", hidden: true }, this.body,
      h("div", { class: "tl-axis-row" }, h("div"), h("div", {}, this.axis, this.marks)), this.tip);
  }

  setWindow(from, to) { this.from = from; this.to = Math.max(to, from + 1); }

  /** Shifts to mark on every band (a line where one starts or ends, its name under the axis);
   *  null: none (a machine without shifts). */
  setShifts(shifts) {
    this.markers = shifts || [];
    this.marks.hidden = shifts === null;
  }

  /** rows: [{ id, label, lang, kind: "category"|"value", segments: [{ from, to, value, category?, text? }] }] */
  setRows(rows) {
    this.el.hidden = rows.length === 0;
    const keep = new Set();
    let previous = null;
    for (const row of rows) {
      keep.add(row.id);
      let entry = this.rows.get(row.id);
      if (!entry) entry = this.makeRow(row);
      const node = entry.el;
      if (previous ? previous.nextSibling !== node : this.body.firstChild !== node) {
        this.body.insertBefore(node, previous ? previous.nextSibling : this.body.firstChild);
      }
      previous = node;
      entry.label.textContent = row.label;
      if (row.lang) entry.label.lang = row.lang; else entry.label.removeAttribute("lang");
      entry.data = this.decorate(row);
      this.drawRow(entry);
    }
    for (const [id, entry] of this.rows) if (!keep.has(id)) { entry.el.remove(); this.rows.delete(id); }
    this.drawAxis();
    this.drawShifts();
  }

  makeRow(row) {
    const label = h("div", { class: "tl-label" });
    const cursor = h("div", { class: "tl-cursor", hidden: true });
    const segs = h("div", { class: "tl-segs" });
    const track = h("div", {
      class: "tl-track", tabindex: "0", role: "img", "aria-describedby": this.tip.id, dataset: { row: row.id },
    }, segs, cursor);
    const legend = h("div", { class: "tl-legend" });
    const el = h("div", { class: "tl-row", dataset: { row: row.id, kind: row.kind } }, label, h("div", { class: "tl-main" }, track, legend));
    const entry = { el, label, track, segs, legend, cursor, data: null, focus: -1 };
    track.addEventListener("pointermove", (e) => this.hover(entry, e));
    track.addEventListener("pointerleave", () => this.leave());
    track.addEventListener("keydown", (e) => this.key(entry, e));
    track.addEventListener("focus", () => this.focusSegment(entry, entry.focus >= 0 ? entry.focus : entry.data.segments.length - 1));
    track.addEventListener("blur", () => this.leave());
    this.rows.set(row.id, entry);
    return entry;
  }

  /** Each segment's colour, ink and shown text; totals per value for the legend and the summary. */
  decorate(row) {
    let colours = this.colours.get(row.id);
    if (!colours) { colours = new Map(); this.colours.set(row.id, colours); }
    const segments = row.segments.map((s) => {
      const category = s.category || (row.kind === "category" ? "unknown" : categoryOf(s.value));
      const key = category && row.kind === "category" ? `cat:${category}` : `v:${String(s.value)}`;
      let text;
      if (row.kind === "category") text = t(`cat.${category}`);
      else if (typeof s.value === "boolean") text = t(s.value ? "band.yes" : "band.no");
      else text = String(s.value);
      let colour = null;
      if (typeof s.value === "boolean") colour = BOOLEAN[s.value];
      else if (!category) {
        colour = colours.get(key);
        if (!colour) { colour = PALETTE[colours.size % PALETTE.length]; colours.set(key, colour); }
      }
      const detail = row.kind === "category" && s.value !== undefined && s.value !== null && String(s.value) !== category
        ? String(s.value) : null;
      return { ...s, category, key, text, detail, colour, ink: colour ? inkFor(colour) : null };
    });
    const totals = new Map();
    for (const s of segments) {
      const seconds = (Math.min(s.to, this.to) - Math.max(s.from, this.from)) / 1000;
      if (seconds <= 0) continue;
      const total = totals.get(s.key) || { ...s, seconds: 0 };
      total.seconds += seconds;
      totals.set(s.key, total);
    }
    return { ...row, segments, totals: [...totals.values()].sort((a, b) => order(a) - order(b) || b.seconds - a.seconds) };
  }

  drawRow(entry) {
    const { data } = entry;
    const span = this.to - this.from;
    const width = entry.track.clientWidth || 800;
    const nodes = [];
    for (const s of data.segments) {
      const left = Math.max(0, (s.from - this.from) / span);
      const right = Math.min(1, (s.to - this.from) / span);
      if (right <= left) continue;
      const px = (right - left) * width;
      const seg = h("div", {
        class: "seg", dataset: { cat: s.category || "", value: String(s.value) },
        style: `left:${(left * 100).toFixed(3)}%;width:${((right - left) * 100).toFixed(3)}%` +
          (s.colour ? `;background:${s.colour};color:${s.ink}` : ""),
      });
      if (px >= s.text.length * 7 + 10) seg.textContent = s.text;
      nodes.push(seg);
    }
    for (const m of this.markers) {
      for (const edge of [m.from, m.to]) {
        if (edge <= this.from || edge >= this.to) continue;
        nodes.push(h("div", { class: "tl-edge", style: `left:${(((edge - this.from) / span) * 100).toFixed(3)}%` }));
      }
    }
    fill(entry.segs, nodes);
    const parts = data.totals.map((s) => `${s.text} ${formatDuration(s.seconds)}`);
    entry.track.setAttribute("aria-label", t("band.summary", { label: data.label, parts: parts.join(", ") || t("band.nodata") }));
    fill(entry.legend, data.totals.map((s) => h("span", { class: "tl-key", dataset: { cat: s.category || "", value: String(s.value) } },
      h("i", { class: "swatch", dataset: { cat: s.category || "" }, style: s.colour ? `background:${s.colour}` : null }),
      h("span", { class: "tl-key-name" }, s.text), " ", h("span", { class: "tl-key-time" }, formatDuration(s.seconds)))));
  }

  drawAxis() {
    const width = this.axis.clientWidth || 800;
    const { ticks, step } = timeTicks(this.from, this.to, width);
    const span = this.to - this.from;
    fill(this.axis, ticks.map((tick) => h("span", { style: `left:${(((tick - this.from) / span) * 100).toFixed(3)}%` },
      tickLabel(tick, step, span))));
  }

  drawShifts() {
    const span = this.to - this.from;
    fill(this.marks, this.markers.filter((m) => m.to > this.from && m.from < this.to).map((m) => {
      const left = Math.max(0, (m.from - this.from) / span);
      const right = Math.min(1, (m.to - this.from) / span);
      return h("span", { class: "tl-shift", title: `${m.label}: ${formatClock(m.from)} – ${formatClock(m.to)}`,
        style: `left:${(left * 100).toFixed(3)}%;width:${((right - left) * 100).toFixed(3)}%` }, m.label);
    }));
  }

  resize() { for (const entry of this.rows.values()) if (entry.data) this.drawRow(entry); this.drawAxis(); this.drawShifts(); }

  segmentAt(entry, time) {
    const segs = entry.data.segments;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (segs[mid].to <= time) lo = mid + 1; else if (segs[mid].from > time) hi = mid - 1; else return mid;
    }
    return -1;
  }

  hover(entry, event) {
    const box = entry.track.getBoundingClientRect();
    const x = Math.min(Math.max(event.clientX - box.left, 0), box.width);
    const time = this.from + (x / box.width) * (this.to - this.from);
    this.showTip(entry, this.segmentAt(entry, time), x, time);
    for (const fn of this.hoverListeners) fn(time);
  }

  leave() {
    this.tip.hidden = true;
    for (const entry of this.rows.values()) entry.track.classList.remove("focus");
    for (const fn of this.hoverListeners) fn(null);
  }

  key(entry, event) {
    const n = entry.data.segments.length;
    if (!n) return;
    const moves = { ArrowLeft: -1, ArrowRight: 1, Home: -Infinity, End: Infinity };
    if (event.key === "Escape") { this.leave(); return; }
    if (!(event.key in moves)) return;
    event.preventDefault();
    const step = moves[event.key];
    const next = step === -Infinity ? 0 : step === Infinity ? n - 1 : Math.min(n - 1, Math.max(0, entry.focus + step));
    this.focusSegment(entry, next);
  }

  focusSegment(entry, index) {
    const segs = entry.data ? entry.data.segments : [];
    if (index < 0 || index >= segs.length) return;
    entry.focus = index;
    const s = segs[index];
    const box = entry.track.getBoundingClientRect();
    const middle = (Math.max(s.from, this.from) + Math.min(s.to, this.to)) / 2;
    const x = ((middle - this.from) / (this.to - this.from)) * box.width;
    this.showTip(entry, index, x, middle);
    entry.track.classList.add("focus");
    for (const fn of this.hoverListeners) fn(middle);
  }

  showTip(entry, index, x, time) {
    const s = index >= 0 ? entry.data.segments[index] : null;
    const duration = s ? formatDuration((s.to - s.from) / 1000) : "";
    const value = s ? (s.detail ? `${s.text} (${s.detail})` : s.text) : t("band.nodata");
    fill(this.tip,
      h("span", { class: "tl-tip-label" }, entry.data.label),
      h("strong", {}, s ? t("band.tip", { value, duration }) : value),
      h("span", { class: "tl-tip-time" }, s
        ? `${formatClock(s.from, { seconds: s.to - s.from < 600e3 })} – ${formatClock(s.to, { seconds: s.to - s.from < 600e3 })}`
        : formatClock(time, { seconds: true })));
    this.tip.dataset.value = s ? String(s.value) : "";
    this.tip.dataset.category = s ? s.category || "" : "no_data";
    this.tip.hidden = false;
    const host = this.el.getBoundingClientRect();
    const track = entry.track.getBoundingClientRect();
    const left = track.left - host.left + x;
    this.tip.style.left = `${Math.min(Math.max(left, 90), host.width - 90)}px`;
    this.tip.style.top = `${track.top - host.top}px`;
    this.showCursor(time);
  }

  /** A vertical line at ``time`` on every row (the charts' cursor follows the same time). */
  showCursor(time) {
    for (const entry of this.rows.values()) {
      if (time === null || time < this.from || time > this.to) { entry.cursor.hidden = true; continue; }
      entry.cursor.hidden = false;
      entry.cursor.style.left = `${(((time - this.from) / (this.to - this.from)) * 100).toFixed(3)}%`;
    }
  }

  onHover(fn) { this.hoverListeners.add(fn); }
}

function order(segment) {
  const i = CATEGORIES.indexOf(segment.category);
  return i < 0 ? CATEGORIES.length : i;
}
