// Italian and English. The language comes from the browser (navigator.languages) unless the
// user picked one with the IT/EN switch (remembered in localStorage).

const STRINGS = {
  en: {
    "nav.overview": "Overview",
    "nav.connections": "Connections",
    "live.title": "Live updates",
    "overview.title": "Machines",
    "overview.empty": "No data yet. As soon as a connector receives values, one card per machine appears here.",
    "overview.more": "+{n} more on the machine page",
    "state.running": "running",
    "state.idle": "idle",
    "state.alarm": "alarm",
    "state.offline": "offline",
    "state.unknown": "no state",
    "offline.death": "offline: death certificate at {time}",
    "age.updated": "updated {age} ago",
    "age.never": "never updated",
    "machine.back": "← Machines",
    "machine.range.15m": "15 min",
    "machine.range.1h": "1 h",
    "machine.range.24h": "24 h",
    "machine.range.7d": "7 days",
    "machine.range.custom": "Custom",
    "machine.from": "From",
    "machine.to": "To",
    "machine.apply": "Show",
    "machine.csv": "Download CSV",
    "machine.nohistory": "No history for this machine: the charts need the embedded historian (a sink of type historian).",
    "machine.waiting": "Nothing of this machine is stored yet: the charts appear as soon as data lands.",
    "machine.nodata": "No data in this range",
    "machine.loading": "Loading…",
    "machine.current": "Current values",
    "machine.time": "Time",
    "machine.notfound": "Unknown machine",
    "machine.range.fit": "Since start",
    "machine.fit.note": "All the data there is: since {time} ({span})",
    "machine.last.note": "Nothing in the last hour: showing the last hour with data, up to {time}",
    "machine.states": "States",
    "machine.trends": "Trends",
    "machine.state.field": "Machine state",
    "chart.summary": "last {last} · min {min} · max {max}",
    "chart.rate.summary": "last {last} · {total} in the range",
    "chart.rate.total": "{total} in the range",
    "chart.rate.wait": "A rate needs a full minute of data",
    "chart.rate.title": "{label} per hour",
    "chart.rate.unit": "/h",
    "chart.keys": "Arrow keys: move along the chart",
    "band.nodata": "no data",
    "band.yes": "yes",
    "band.no": "no",
    "band.tip": "{value} · {duration}",
    "band.summary": "{label}: {parts}",
    "duration.s": "{s} s",
    "duration.m": "{m} min",
    "duration.ms": "{m} min {s} s",
    "duration.h": "{h} h",
    "duration.hm": "{h} h {m} min",
    "duration.d": "{d} d",
    "duration.dh": "{d} d {h} h",
    "cat.running": "running",
    "cat.idle": "idle",
    "cat.down": "down",
    "cat.setup": "setup",
    "cat.planned_stop": "planned stop",
    "cat.unknown": "unknown",
    "cat.no_data": "no data",
    "kpi.title": "OEE",
    "kpi.shift": "This shift",
    "kpi.shift.named": "Shift {name}",
    "kpi.today": "Today",
    "kpi.range": "Shown range",
    "kpi.oee": "OEE",
    "kpi.availability": "Availability",
    "kpi.performance": "Performance",
    "kpi.quality": "Quality",
    "kpi.nodata": "no data",
    "kpi.parts": "{parts} parts",
    "kpi.good": "{good} good",
    "kpi.scrap": "{scrap} scrap",
    "kpi.time": "Time per state",
    "kpi.pph": "Parts per hour",
    "kpi.pph.actual": "made",
    "kpi.pph.ideal": "ideal {rate}",
    "kpi.since": "since {time} ({age})",
    "kpi.today.card": "OEE today",
    "kpi.unavailable": "The OEE figures cannot be read now: {error}",
    "kpi.span": "{from} – {to}",
    "kpi.noshift": "no shift now",
    "kpi.noparts": "no parts counter",
    "conn.title": "Connections",
    "conn.name": "Name",
    "conn.kind": "Kind",
    "conn.type": "Type",
    "conn.state": "State",
    "conn.since": "since {time}",
    "conn.rates": "Rates",
    "conn.buffer": "Buffer",
    "conn.error": "Last error",
    "conn.noerror": "none",
    "conn.details": "Details",
    "conn.connector": "connector",
    "conn.sink": "sink",
    "conn.empty": "No connectors or sinks are configured.",
    "conn.persec": "/s",
    "conn.points": "points",
    "conn.age": "oldest {age}",
    "config.generation": "Configuration generation {n}, applied {time} (sha256 {hash})",
    "config.failed": "The last reload ({time}) was refused: {n} problem(s) in the file. The gateway runs on generation {generation}, unchanged.",
    "config.restart": "Needs a restart of the gateway: {what}",
    "quality.bad": "bad value",
    "quality.uncertain": "uncertain value",
    "write.title": "Remote settings",
    "write.history": "Last writes",
    "write.now": "now",
    "write.change": "Change…",
    "write.choose": "— choose —",
    "write.hint.range": "{min} to {max}{unit}",
    "write.hint.min": "at least {min}{unit}",
    "write.hint.max": "at most {max}{unit}",
    "write.confirm.title": "Change {label}?",
    "write.confirm.to": "to",
    "write.confirm.note": "The value is written to the machine, then read back. The write is recorded with your user name.",
    "write.confirm.cancel": "Cancel",
    "write.confirm.write": "Write to the machine",
    "write.writing": "Writing to the machine…",
    "write.done": "Written at {time} · read back: {value}",
    "write.failed": "Not written: {reason}",
    "write.noanswer": "No answer from the gateway ({error}): whether the machine took the value is unknown",
    "write.invalid.number": "Give a number",
    "write.invalid.integer": "Give a whole number",
    "write.invalid.min": "At least {min}",
    "write.invalid.max": "At most {max}",
    "write.invalid.pattern": "Not in the expected form ({pattern})",
    "write.invalid.choose": "Choose a value",
    "write.none": "No writes to this machine yet.",
    "write.audit.error": "The last writes cannot be read now: {error}",
    "write.col.time": "Time",
    "write.col.field": "Field",
    "write.col.change": "Before → asked",
    "write.col.readback": "Read back",
    "write.col.result": "Outcome",
    "write.col.who": "Who",
    "write.result.written": "written",
    "write.result.refused_limits": "outside the limits",
    "write.result.refused_type": "wrong type",
    "write.result.not_writable": "not writable",
    "write.result.forbidden": "not allowed for this user",
    "write.result.refused_by_machine": "refused by the machine",
    "write.result.timeout": "no answer from the machine",
    "write.result.error": "error",
  },
  it: {
    "nav.overview": "Panoramica",
    "nav.connections": "Connessioni",
    "live.title": "Aggiornamenti in tempo reale",
    "overview.title": "Macchine",
    "overview.empty": "Ancora nessun dato. Appena un connettore riceve valori, qui compare una scheda per ogni macchina.",
    "overview.more": "+{n} nella pagina della macchina",
    "state.running": "in lavoro",
    "state.idle": "ferma",
    "state.alarm": "allarme",
    "state.offline": "non in linea",
    "state.unknown": "stato ignoto",
    "offline.death": "non in linea: certificato di morte alle {time}",
    "age.updated": "aggiornata {age} fa",
    "age.never": "mai aggiornata",
    "machine.back": "← Macchine",
    "machine.range.15m": "15 min",
    "machine.range.1h": "1 ora",
    "machine.range.24h": "24 ore",
    "machine.range.7d": "7 giorni",
    "machine.range.custom": "Personalizzato",
    "machine.from": "Da",
    "machine.to": "A",
    "machine.apply": "Mostra",
    "machine.csv": "Scarica CSV",
    "machine.nohistory": "Nessuno storico per questa macchina: i grafici richiedono lo storico integrato (un sink di tipo historian).",
    "machine.waiting": "Ancora nessun dato salvato per questa macchina: i grafici compaiono appena arrivano i dati.",
    "machine.nodata": "Nessun dato in questo intervallo",
    "machine.loading": "Caricamento…",
    "machine.current": "Valori attuali",
    "machine.time": "Ora",
    "machine.notfound": "Macchina sconosciuta",
    "machine.range.fit": "Dall'inizio",
    "machine.fit.note": "Tutti i dati disponibili: dalle {time} ({span})",
    "machine.last.note": "Niente nell'ultima ora: mostrata l'ultima ora con dati, fino alle {time}",
    "machine.states": "Stati",
    "machine.trends": "Andamenti",
    "machine.state.field": "Stato macchina",
    "chart.summary": "ultimo {last} · min {min} · max {max}",
    "chart.rate.summary": "ultimo {last} · {total} nell'intervallo",
    "chart.rate.total": "{total} nell'intervallo",
    "chart.rate.wait": "Per una cadenza serve almeno un minuto di dati",
    "chart.rate.title": "{label} all'ora",
    "chart.rate.unit": "/h",
    "chart.keys": "Tasti freccia: scorri il grafico",
    "band.nodata": "nessun dato",
    "band.yes": "sì",
    "band.no": "no",
    "band.tip": "{value} · {duration}",
    "band.summary": "{label}: {parts}",
    "duration.s": "{s} s",
    "duration.m": "{m} min",
    "duration.ms": "{m} min {s} s",
    "duration.h": "{h} h",
    "duration.hm": "{h} h {m} min",
    "duration.d": "{d} g",
    "duration.dh": "{d} g {h} h",
    "cat.running": "in lavoro",
    "cat.idle": "ferma",
    "cat.down": "guasto",
    "cat.setup": "attrezzaggio",
    "cat.planned_stop": "fermo programmato",
    "cat.unknown": "sconosciuto",
    "cat.no_data": "nessun dato",
    "kpi.title": "OEE",
    "kpi.shift": "Turno attuale",
    "kpi.shift.named": "Turno {name}",
    "kpi.today": "Oggi",
    "kpi.range": "Intervallo mostrato",
    "kpi.oee": "OEE",
    "kpi.availability": "Disponibilità",
    "kpi.performance": "Efficienza",
    "kpi.quality": "Qualità",
    "kpi.nodata": "nessun dato",
    "kpi.parts": "{parts} pezzi",
    "kpi.good": "{good} buoni",
    "kpi.scrap": "{scrap} scarti",
    "kpi.time": "Tempo per stato",
    "kpi.pph": "Pezzi all'ora",
    "kpi.pph.actual": "prodotti",
    "kpi.pph.ideal": "ideale {rate}",
    "kpi.since": "dalle {time} ({age})",
    "kpi.today.card": "OEE oggi",
    "kpi.unavailable": "I dati OEE non si possono leggere ora: {error}",
    "kpi.span": "{from} – {to}",
    "kpi.noshift": "fuori turno",
    "kpi.noparts": "nessun contapezzi",
    "conn.title": "Connessioni",
    "conn.name": "Nome",
    "conn.kind": "Tipo di componente",
    "conn.type": "Tipo",
    "conn.state": "Stato",
    "conn.since": "dalle {time}",
    "conn.rates": "Velocità",
    "conn.buffer": "Buffer",
    "conn.error": "Ultimo errore",
    "conn.noerror": "nessuno",
    "conn.details": "Dettagli",
    "conn.connector": "connettore",
    "conn.sink": "destinazione",
    "conn.empty": "Nessun connettore o destinazione configurato.",
    "conn.persec": "/s",
    "conn.points": "punti",
    "conn.age": "il più vecchio {age}",
    "config.generation": "Configurazione generazione {n}, applicata {time} (sha256 {hash})",
    "config.failed": "L'ultimo ricaricamento ({time}) è stato rifiutato: {n} problema/i nel file. Il gateway continua con la generazione {generation}, invariata.",
    "config.restart": "Serve un riavvio del gateway: {what}",
    "quality.bad": "valore non valido",
    "quality.uncertain": "valore incerto",
    "write.title": "Impostazioni da remoto",
    "write.history": "Ultime scritture",
    "write.now": "attuale",
    "write.change": "Cambia…",
    "write.choose": "— scegli —",
    "write.hint.range": "da {min} a {max}{unit}",
    "write.hint.min": "almeno {min}{unit}",
    "write.hint.max": "al massimo {max}{unit}",
    "write.confirm.title": "Cambiare {label}?",
    "write.confirm.to": "in",
    "write.confirm.note": "Il valore viene scritto sulla macchina e poi riletto. La scrittura viene registrata con il tuo nome utente.",
    "write.confirm.cancel": "Annulla",
    "write.confirm.write": "Scrivi sulla macchina",
    "write.writing": "Scrittura sulla macchina…",
    "write.done": "Scritto alle {time} · riletto: {value}",
    "write.failed": "Non scritto: {reason}",
    "write.noanswer": "Nessuna risposta dal gateway ({error}): non si sa se la macchina abbia preso il valore",
    "write.invalid.number": "Inserisci un numero",
    "write.invalid.integer": "Inserisci un numero intero",
    "write.invalid.min": "Almeno {min}",
    "write.invalid.max": "Al massimo {max}",
    "write.invalid.pattern": "Formato non valido ({pattern})",
    "write.invalid.choose": "Scegli un valore",
    "write.none": "Ancora nessuna scrittura su questa macchina.",
    "write.audit.error": "Le ultime scritture non si possono leggere ora: {error}",
    "write.col.time": "Ora",
    "write.col.field": "Campo",
    "write.col.change": "Prima → richiesto",
    "write.col.readback": "Riletto",
    "write.col.result": "Esito",
    "write.col.who": "Chi",
    "write.result.written": "scritto",
    "write.result.refused_limits": "fuori dai limiti",
    "write.result.refused_type": "tipo errato",
    "write.result.not_writable": "non scrivibile",
    "write.result.forbidden": "non consentito a questo utente",
    "write.result.refused_by_machine": "rifiutato dalla macchina",
    "write.result.timeout": "nessuna risposta dalla macchina",
    "write.result.error": "errore",
  },
};

export const LANGUAGES = Object.keys(STRINGS);
let current = pickLanguage();
const listeners = new Set();

function pickLanguage() {
  const saved = safeGet("gateway.lang");
  if (saved && STRINGS[saved]) return saved;
  for (const tag of navigator.languages || [navigator.language || "en"]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (STRINGS[base]) return base;
  }
  return "en";
}

function safeGet(key) {
  try { return localStorage.getItem(key); } catch { return null; }
}

export function lang() { return current; }

export function t(key, params = {}) {
  const text = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : `{${name}}`));
}

export function setLanguage(code) {
  if (!STRINGS[code] || code === current) return;
  current = code;
  try { localStorage.setItem("gateway.lang", code); } catch { /* private mode */ }
  applyStatic();
  for (const fn of listeners) fn(code);
}

export function onLanguage(fn) { listeners.add(fn); return () => listeners.delete(fn); }

/** Translate every element carrying data-i18n (text) or data-i18n-title (tooltip). */
export function applyStatic(root = document) {
  document.documentElement.lang = current;
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of root.querySelectorAll("[data-lang]")) el.setAttribute("aria-pressed", String(el.dataset.lang === current));
}

/** "12 s", "5 min", "3 h", "2 d" — short enough for a card. */
export function formatAge(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h`;
  return `${Math.floor(s / 86400)} ${current === "it" ? "g" : "d"}`;
}

/** The page language's locale for Intl: numbers read 0,67 in Italian and 0.67 in English. */
export function locale() { return current === "it" ? "it-IT" : "en-GB"; }

const formatters = new Map();
function numberFormat(options) {
  const key = `${current}|${JSON.stringify(options)}`;
  let format = formatters.get(key);
  if (!format) { format = new Intl.NumberFormat(locale(), options); formatters.set(key, format); }
  return format;
}

export function formatNumber(value, decimals = null) {
  if (typeof value === "boolean") return value ? "1" : "0";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(decimals)) {
    return numberFormat({ minimumFractionDigits: decimals, maximumFractionDigits: decimals }).format(value);
  }
  const abs = Math.abs(value);
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 1 ? 2 : 3;
  return numberFormat({ maximumFractionDigits: digits }).format(value);
}

/** A ratio 0–1 as a percentage in the page's language ("66.7%", "66,7%"); null is "no data", never 0 %. */
export function formatPercent(ratio, digits = 1) {
  if (ratio === null || ratio === undefined || !Number.isFinite(ratio)) return t("kpi.nodata");
  return numberFormat({ style: "percent", minimumFractionDigits: digits, maximumFractionDigits: digits }).format(ratio);
}

/** A duration for people: "45 s", "12 min", "1 h 05 min", "2 d 3 h" ("2 g 3 h" in Italian). */
export function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  if (seconds > 0 && seconds < 1) return t("duration.s", { s: "< 1" });
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return t("duration.s", { s });
  if (s < 600) return s % 60 ? t("duration.ms", { m: Math.floor(s / 60), s: s % 60 }) : t("duration.m", { m: s / 60 });
  const minutes = Math.round(s / 60);
  if (minutes < 60) return t("duration.m", { m: minutes });
  if (minutes < 1440) {
    const h = Math.floor(minutes / 60);
    const m = minutes % 60;
    return m ? t("duration.hm", { h, m: String(m).padStart(2, "0") }) : t("duration.h", { h });
  }
  const hours = Math.round(minutes / 60);
  const d = Math.floor(hours / 24);
  const h = hours % 24;
  return h ? t("duration.dh", { d, h }) : t("duration.d", { d });
}

/** The language of the label displayLabel() gives, for the element's lang attribute (hyphenation,
 *  screen readers): the page's language when the config has it, else English for a configured
 *  English label; null for a bare field name. */
export function labelLang(d) {
  const labels = d.labels || {};
  if (labels[current]) return current;
  if (labels.en) return "en";
  const languages = Object.keys(labels);
  return languages.length === 1 ? languages[0] : null;
}

/** "14:05" (or "12/07 14:05" when the time is not today); seconds on request. */
export function formatClock(ms, { seconds = false, date = null } = {}) {
  const d = new Date(ms);
  const showDate = date ?? new Date().toDateString() !== d.toDateString();
  const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (seconds) options.second = "2-digit";
  if (showDate) { options.day = "2-digit"; options.month = "2-digit"; }
  return dateFormat(options).format(d);
}

export function dateFormat(options) {
  const key = `${current}|d|${JSON.stringify(options)}`;
  let format = formatters.get(key);
  if (!format) { format = new Intl.DateTimeFormat(locale(), options); formatters.set(key, format); }
  return format;
}

/** A field's name for people: its label in the page's language (overview.fields), else the default. */
export function displayLabel(d) {
  return (d.labels && d.labels[current]) || d.label || d.field;
}

/** A value with its unit and configured decimals: "12.000 rpm", "61,5 °C"; text is shown as it is. */
export function formatValue(value, d = {}) {
  if (value === null || value === undefined) return "–";
  const text = formatNumber(value, typeof value === "number" ? d.decimals : null);
  return d.unit && typeof value === "number" ? `${text} ${d.unit}` : text;
}

export function formatTime(ms) {
  return dateFormat({ dateStyle: "short", timeStyle: "medium" }).format(new Date(ms));
}
