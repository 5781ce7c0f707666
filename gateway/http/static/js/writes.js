// Writing to the machine from its page. An operator (or the admin) gets a control for each field of
// the machine its connector declares writable (GET /api/writable): a list for `allowed` values, a
// number input within min/max, a text with its pattern, a yes/no. Changing a value opens a
// confirmation that shows old → new; only then is it written (POST /api/write), and the outcome
// and the value read back from the machine are shown where the control is. Everyone, viewers
// included, sees the machine's last writes (GET /api/audit); a viewer never sees a control.

import { getJSON, postJSON } from "./api.js";
import { h, fill } from "./dom.js";
import { t, displayLabel, labelLang, formatClock, formatNumber, lang } from "./i18n.js";

/** Writes listed under the controls. */
const HISTORY_ROWS = 8;
/** The list follows other operators' writes this often (ms). */
const REFRESH = 10e3;
const WRITERS = new Set(["operator", "admin"]);

function sameTags(a, b) {
  const ka = Object.keys(a || {});
  const kb = Object.keys(b || {});
  return ka.length === kb.length && ka.every((k) => String(a[k]) === String(b[k]));
}

/** A value as the page shows it (with the field's unit for numbers); null is "–". */
function shown(value, unit = "") {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "boolean") return value ? t("band.yes") : t("band.no");
  if (typeof value === "number") return unit ? `${formatNumber(value)} ${unit}` : formatNumber(value);
  return String(value);
}

/** The client's check before the confirmation (the gateway checks again, and the machine too). */
function parseValue(spec, raw) {
  if (spec.allowed) {
    if (raw === "") return { error: t("write.invalid.choose") };
    return { value: spec.allowed[Number(raw)] };
  }
  if (spec.type === "boolean") return { value: raw === "true" };
  if (spec.type === "integer" || spec.type === "number") {
    const text = String(raw).trim().replace(",", ".");
    const number = Number(text);
    if (text === "" || !Number.isFinite(number)) return { error: t("write.invalid.number") };
    if (spec.type === "integer" && !Number.isInteger(number)) return { error: t("write.invalid.integer") };
    if (spec.min !== null && spec.min !== undefined && number < spec.min) return { error: t("write.invalid.min", { min: formatNumber(spec.min) }) };
    if (spec.max !== null && spec.max !== undefined && number > spec.max) return { error: t("write.invalid.max", { max: formatNumber(spec.max) }) };
    return { value: number };
  }
  const text = String(raw);
  if (spec.pattern) {
    const regex = jsPattern(spec.pattern);
    if (regex && !regex.test(text)) return { error: t("write.invalid.pattern", { pattern: spec.pattern }) };
  }
  return { value: text };
}

/** The config's pattern (a Python regular expression, matched whole) as a JavaScript one, when it is
 *  one too; else null and only the gateway checks it. */
function jsPattern(pattern) {
  try { return new RegExp(`^(?:${pattern})$`, "u"); } catch { return null; }
}

export class WritePanel {
  /** ``belongs(entry)``: whether a writable field (connector, measurement, tags) is this machine's. */
  constructor({ machine, belongs }) {
    this.machine = machine;
    this.belongs = belongs;
    this.role = "viewer";
    this.fields = [];           // this machine's writable fields
    this.rows = new Map();      // "connector/field" → { spec, form, input, now, result, button }
    this.values = [];           // the card's current values (live)
    this.timer = null;
    this.disposed = false;
    this.busy = false;
    this.built = false;
    this.el = h("section", { class: "writes", id: "writes", hidden: true, "aria-labelledby": "writes-title" });
    this.dialog = null;
  }

  /** Who the caller is and what is writable (asked while the page asks for the machine's values). */
  async fetch() {
    const [who, writable] = await Promise.all([
      getJSON("/api/whoami").catch(() => ({ role: "viewer" })),
      getJSON("/api/writable").catch(() => []),
    ]);
    return { role: who.role, writable: Array.isArray(writable) ? writable : [] };
  }

  /** This machine's writable fields (``belongs`` needs the overview's group_by, known by now) and its
   *  last writes: all before the page draws its charts, so the section never pushes them down later. */
  async show({ role, writable }) {
    if (this.disposed || this.built) return; // (the page loads again while nothing is stored yet)
    this.role = role;
    this.fields = writable.filter((f) => this.belongs(f));
    if (!this.fields.length) return; // nothing of this machine can be written: no section at all
    this.built = true;
    this.build();
    await this.refreshHistory();
    this.el.hidden = false;
    this.timer = setInterval(() => { if (!this.busy) this.refreshHistory(); }, REFRESH);
  }

  get canWrite() { return WRITERS.has(this.role); }

  build() {
    const title = h("h2", { id: "writes-title" }, t(this.canWrite ? "write.title" : "write.history"));
    this.history = h("div", { class: "write-history", id: "write-history", "aria-live": "polite" });
    const parts = [title];
    if (this.canWrite) {
      const list = h("div", { class: "write-rows", id: "write-rows" });
      for (const spec of this.fields) list.append(this.row(spec));
      parts.push(list, h("h3", { class: "write-history-title" }, t("write.history")));
      this.dialog = this.confirmDialog();
      parts.push(this.dialog);
    }
    parts.push(this.history);
    fill(this.el, parts);
    this.showValues();
  }

  /** The card value this writable field is (same measurement, field and tags), if the machine sends it. */
  current(spec) {
    return this.values.find((v) => v.measurement === spec.measurement && v.field === spec.field && sameTags(v.tags, spec.tags))
      || null;
  }

  label(spec) {
    const value = this.current(spec);
    return value ? displayLabel(value) : spec.field;
  }

  unit(spec) {
    const value = this.current(spec);
    return spec.unit || (value && value.unit) || "";
  }

  row(spec) {
    const key = `${spec.connector}/${spec.field}`;
    const id = `write-${key.replace(/[^\w-]+/g, "_")}`;
    let input;
    if (spec.allowed) {
      input = h("select", { id, name: "value" },
        h("option", { value: "", disabled: true }, t("write.choose")),
        spec.allowed.map((v, i) => h("option", { value: String(i) }, shown(v))));
      input.value = "";
    } else if (spec.type === "boolean") {
      input = h("select", { id, name: "value" },
        h("option", { value: "true" }, t("band.yes")), h("option", { value: "false" }, t("band.no")));
    } else if (spec.type === "integer" || spec.type === "number") {
      input = h("input", {
        id, name: "value", type: "number", inputmode: spec.type === "integer" ? "numeric" : "decimal",
        step: spec.type === "integer" ? "1" : "any", min: spec.min ?? undefined, max: spec.max ?? undefined,
        required: true,
      });
    } else {
      const pattern = spec.pattern && jsPattern(spec.pattern) ? spec.pattern : undefined;
      input = h("input", {
        id, name: "value", type: "text", autocomplete: "off", spellcheck: "false", pattern,
        maxlength: spec.max_length ?? undefined, title: spec.pattern || undefined,
      });
    }
    const unit = h("span", { class: "write-unit" });
    const now = h("strong", { class: "write-now-value", dataset: { now: "" } }, "–");
    const label = h("label", { for: id, class: "write-label" });
    const hint = h("span", { class: "write-hint muted" }, this.hint(spec));
    const button = h("button", { type: "submit", class: "write-button" }, t("write.change"));
    const result = h("p", { class: "write-result", "aria-live": "polite", dataset: { state: "" } });
    const form = h("form", { class: "write-row", dataset: { connector: spec.connector, field: spec.field }, novalidate: true },
      h("div", { class: "write-name" }, label, hint),
      h("div", { class: "write-now" }, h("span", { class: "muted" }, t("write.now")), " ", now),
      h("div", { class: "write-input" }, input, unit),
      button,
      result);
    form.addEventListener("submit", (event) => { event.preventDefault(); this.ask(key); });
    this.rows.set(key, { spec, form, input, now, result, button, label, unit, touched: false });
    input.addEventListener("input", () => { this.rows.get(key).touched = true; });
    return form;
  }

  hint(spec) {
    const unit = spec.unit ? ` ${spec.unit}` : "";
    const has = (v) => v !== null && v !== undefined;
    if (has(spec.min) && has(spec.max)) return t("write.hint.range", { min: formatNumber(spec.min), max: formatNumber(spec.max), unit });
    if (has(spec.min)) return t("write.hint.min", { min: formatNumber(spec.min), unit });
    if (has(spec.max)) return t("write.hint.max", { max: formatNumber(spec.max), unit });
    return "";
  }

  /** The card's live values: each row's label, unit and current value (its input follows it until touched). */
  setValues(values) {
    this.values = values || [];
    this.showValues();
  }

  showValues() {
    for (const row of this.rows.values()) {
      const value = this.current(row.spec);
      row.label.textContent = this.label(row.spec);
      const language = value ? labelLang(value) : null;
      if (language) row.label.lang = language; else row.label.removeAttribute("lang");
      row.unit.textContent = row.spec.allowed || row.spec.type === "boolean" ? "" : this.unit(row.spec);
      row.now.textContent = value ? shown(value.value, this.unit(row.spec)) : "–";
      if (!row.touched && value && value.value !== null && value.value !== undefined) this.preset(row, value.value);
    }
  }

  /** Put the machine's value in an untouched control (a list selects it when it is one of the allowed). */
  preset(row, value) {
    const { spec, input } = row;
    if (spec.allowed) {
      const index = spec.allowed.findIndex((v) => String(v) === String(value));
      if (index >= 0) input.value = String(index);
    } else if (spec.type === "boolean") {
      input.value = String(Boolean(value));
    } else if (document.activeElement !== input) {
      input.value = String(value);
    }
  }

  confirmDialog() {
    const dialog = h("dialog", { class: "write-confirm", id: "write-confirm", "aria-labelledby": "write-confirm-title" });
    dialog.addEventListener("close", () => {
      const pending = this.pending;
      this.pending = null;
      if (pending && dialog.returnValue === "write") this.write(pending);
      else if (pending) pending.row.button.focus();
    });
    return dialog;
  }

  /** The confirmation: old → new, where, and that it is recorded. Cancel has the focus (Esc cancels too). */
  ask(key) {
    const row = this.rows.get(key);
    if (!row || this.busy) return;
    const parsed = parseValue(row.spec, row.input.value);
    if (parsed.error) {
      this.showResult(row, "invalid", parsed.error);
      row.input.focus();
      return;
    }
    this.showResult(row, "", "");
    const value = this.current(row.spec);
    const unit = row.spec.allowed || row.spec.type === "boolean" ? "" : this.unit(row.spec);
    const label = this.label(row.spec);
    this.pending = { row, value: parsed.value };
    const cancel = h("button", { type: "submit", value: "cancel", class: "write-cancel", autofocus: true }, t("write.confirm.cancel"));
    fill(this.dialog,
      h("h2", { id: "write-confirm-title" }, t("write.confirm.title", { label })),
      h("p", { class: "write-confirm-where muted" }, [this.machine, row.spec.connector, row.spec.target].filter(Boolean).join(" · ")),
      h("p", { class: "write-confirm-change" },
        h("span", { class: "write-old", id: "write-confirm-old" }, value ? shown(value.value, unit) : "–"),
        h("span", { class: "write-arrow", "aria-label": t("write.confirm.to") }, " → "),
        h("span", { class: "write-new", id: "write-confirm-new" }, shown(parsed.value, unit))),
      h("p", { class: "write-confirm-note" }, t("write.confirm.note")),
      h("form", { method: "dialog", class: "write-confirm-buttons" },
        cancel,
        h("button", { type: "submit", value: "write", class: "write-go", id: "write-confirm-go" }, t("write.confirm.write"))));
    this.dialog.returnValue = "";
    this.dialog.showModal();
    cancel.focus();
  }

  async write({ row, value }) {
    this.busy = true;
    row.button.disabled = true;
    row.input.disabled = true;
    this.showResult(row, "busy", t("write.writing"));
    let answer;
    try {
      answer = await postJSON("/api/write", { connector: row.spec.connector, field: row.spec.field, value });
    } catch (e) {
      answer = { status: 0, body: null, error: String(e) };
    } finally {
      this.busy = false;
      row.button.disabled = false;
      row.input.disabled = false;
    }
    if (this.disposed) return;
    const body = answer.body || {};
    const unit = row.spec.allowed || row.spec.type === "boolean" ? "" : this.unit(row.spec);
    if (answer.ok && body.result === "written") {
      const when = formatClock(body.at_ms ?? Date.now(), { seconds: true });
      this.showResult(row, "written", t("write.done", { time: when, value: shown(body.read_back, unit) }));
      row.touched = false;
    } else if (body.result) {
      const reason = t(`write.result.${body.result}`) + (body.message ? ` — ${body.message}` : "");
      this.showResult(row, "refused", t("write.failed", { reason }));
    } else {
      const error = answer.error || `${answer.status} ${body.detail || ""}`.trim();
      this.showResult(row, "refused", t("write.noanswer", { error }));
    }
    row.button.focus();
    await this.refreshHistory();
  }

  showResult(row, state, text) {
    row.result.dataset.state = state;
    row.result.textContent = text;
  }

  async refreshHistory() {
    const connectors = [...new Set(this.fields.map((f) => f.connector))];
    const wanted = new Set(this.fields.map((f) => `${f.connector}/${f.field}`));
    let entries;
    try {
      const answers = await Promise.all(connectors.map((c) =>
        getJSON(`/api/audit?connector=${encodeURIComponent(c)}&limit=${HISTORY_ROWS * 4}`)));
      entries = answers.flatMap((a) => a.entries || []);
    } catch (e) {
      if (!this.disposed) fill(this.history, h("p", { class: "muted" }, t("write.audit.error", { error: String(e.message || e) })));
      return;
    }
    if (this.disposed) return;
    // This machine's fields only (a connector may serve several machines), newest first.
    entries = entries.filter((e) => wanted.has(`${e.connector}/${e.field}`))
      .sort((a, b) => (b.at_ms || 0) - (a.at_ms || 0)).slice(0, HISTORY_ROWS);
    if (!entries.length) {
      fill(this.history, h("p", { class: "muted write-none" }, t("write.none")));
      return;
    }
    const byKey = new Map(this.fields.map((f) => [`${f.connector}/${f.field}`, f]));
    const columns = ["time", "field", "change", "readback", "result", "who"].map((k) => t(`write.col.${k}`));
    const head = h("thead", {}, h("tr", {}, columns.map((text) => h("th", { scope: "col" }, text))));
    // (each cell carries its column's name: on a phone the rows are stacked and name their cells)
    const cell = (i, attrs, ...children) => h("td", { ...attrs, dataset: { label: columns[i] } }, ...children);
    const body = h("tbody", {}, entries.map((e) => {
      const spec = byKey.get(`${e.connector}/${e.field}`);
      const unit = spec && !spec.allowed && spec.type !== "boolean" ? this.unit(spec) : "";
      const ok = e.result === "written";
      return h("tr", { dataset: { result: e.result || "", field: e.field || "" } },
        cell(0, { class: "num" }, e.at_ms ? formatClock(e.at_ms, { seconds: true }) : "–"),
        cell(1, {}, spec ? this.label(spec) : e.field),
        cell(2, {}, `${shown(e.old, unit)} → ${shown(e.requested, unit)}`),
        cell(3, {}, shown(e.read_back, unit)),
        cell(4, { class: ok ? "write-ok" : "write-ko", title: e.message || "" }, t(`write.result.${e.result}`)),
        cell(5, {}, [e.user, e.role].filter(Boolean).join(" · ") || "–"));
    }));
    fill(this.history, h("table", { class: "conn write-audit", id: "write-audit", lang: lang() }, head, body));
  }

  destroy() {
    this.disposed = true;
    clearInterval(this.timer);
    if (this.dialog?.open) this.dialog.close();
  }
}
