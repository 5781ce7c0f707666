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

export function formatNumber(value, decimals = null) {
  if (typeof value === "boolean") return value ? "1" : "0";
  if (typeof value !== "number") return String(value);
  const locale = current === "it" ? "it-IT" : "en-GB";
  if (Number.isInteger(decimals)) {
    return new Intl.NumberFormat(locale, { minimumFractionDigits: decimals, maximumFractionDigits: decimals }).format(value);
  }
  const abs = Math.abs(value);
  const digits = abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 1 ? 2 : 3;
  return new Intl.NumberFormat(locale, { maximumFractionDigits: digits }).format(value);
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
  return new Intl.DateTimeFormat(current === "it" ? "it-IT" : "en-GB", {
    dateStyle: "short", timeStyle: "medium",
  }).format(new Date(ms));
}
