// Connections: every connector and sink with its state, rates, buffer depth and last error,
// and the configuration in force (its generation, hash, and a failed reload, if the last one
// failed). The admin can open each one's details (its status detail and masked configuration)
// and sees the problems of a refused reload line by line.

import { getJSON, subscribe } from "./api.js";
import { h, clear } from "./dom.js";
import { t, formatAge, formatNumber, formatTime } from "./i18n.js";

export function showConnections(root) {
  const body = h("tbody", { id: "conn-rows" });
  const empty = h("p", { class: "empty", hidden: true }, t("conn.empty"));
  const table = h("table", { class: "conn", id: "connections" },
    h("thead", {}, h("tr", {},
      ["name", "kind", "state", "rates", "buffer", "error"].map((k) => h("th", {}, t(`conn.${k}`))))),
    body);
  const configBox = h("section", { class: "config", id: "config-state" });
  root.append(h("h1", {}, t("conn.title")), configBox, empty, table);
  let admin = false;
  const open = new Set();
  const details = new Map(); // name → last fetched detail text

  getJSON("/api/whoami").then((who) => { admin = who.role === "admin"; }).catch(() => {});

  function renderConfig(config) {
    clear(configBox);
    if (!config) return;
    configBox.append(h("div", { class: "muted" }, t("config.generation", {
      n: config.generation,
      time: formatTime(config.applied_at * 1000),
      hash: config.sha256 ? config.sha256.slice(0, 12) : "–",
    })));
    const last = config.last_reload;
    if (last && last.result === "failed") {
      configBox.append(h("div", { class: "config-failed", id: "config-failed" },
        h("strong", {}, t("config.failed", { time: formatTime(last.at * 1000), n: last.error_count, generation: config.generation })),
        last.errors.length ? h("pre", { class: "detail" }, last.errors.join("\n")) : null));
    }
    for (const line of config.restart_required || []) {
      configBox.append(h("div", { class: "config-restart" }, t("config.restart", { what: line })));
    }
  }

  function refresh() {
    getJSON("/api/status").then((s) => { renderConfig(s.gateway.config); render(s.components); }).catch(console.error);
  }

  function render(components) {
    empty.hidden = components.length > 0;
    table.hidden = components.length === 0;
    clear(body);
    for (const c of components) {
      const ok = c.state === "running";
      const rates = Object.entries(c.rates || {}).filter(([, v]) => v > 0)
        .map(([k, v]) => `${k.replace(/_/g, " ")} ${formatNumber(v)}${t("conn.persec")}`);
      const buffer = c.buffer_depth == null ? "–"
        : `${formatNumber(c.buffer_depth)} ${t("conn.points")}` +
          (c.oldest_age_seconds ? ` (${t("conn.age", { age: formatAge(c.oldest_age_seconds) })})` : "");
      const row = h("tr", { dataset: { name: c.name, kind: c.kind, state: c.state } },
        h("td", {}, h("strong", {}, c.name), h("div", { class: "muted" }, c.type)),
        h("td", {}, t(`conn.${c.kind}`)),
        h("td", {},
          h("span", { class: "state", dataset: { ok: String(ok) } }, c.state),
          h("div", { class: "muted" }, t("conn.since", { time: formatTime(c.since * 1000) }))),
        h("td", {}, rates.length ? rates.map((r) => h("div", {}, r)) : "–"),
        h("td", { class: "num" }, buffer),
        h("td", {}, c.last_error
          ? [h("div", { class: "error" }, c.last_error), h("div", { class: "muted" }, formatTime(c.last_error_at * 1000))]
          : h("span", { class: "muted" }, t("conn.noerror")),
          admin ? h("div", {}, h("button", { type: "button", onclick: () => toggle(c.name) }, t("conn.details"))) : null));
      body.append(row);
      if (open.has(c.name)) body.append(h("tr", { class: "detail-row" }, h("td", { colspan: 6 }, h("pre", { class: "detail", id: `detail-${c.name}` }, details.get(c.name) || "…"))));
    }
    for (const name of open) loadDetail(name);
  }

  async function loadDetail(name) {
    try {
      const detail = await getJSON(`/api/components/${encodeURIComponent(name)}`);
      details.set(name, JSON.stringify(detail.map((d) => ({ detail: d.detail, config: d.config })), null, 2));
      const pre = document.getElementById(`detail-${name}`);
      if (pre) pre.textContent = details.get(name);
    } catch (e) { console.error(e); }
  }

  function toggle(name) {
    if (open.has(name)) open.delete(name); else open.add(name);
    refresh();
  }

  // The live status event carries the components; the configuration comes with /api/status.
  let configAt = 0;
  const unsubscribe = subscribe("status", (components) => {
    render(components);
    if (Date.now() - configAt > 5000) {
      configAt = Date.now();
      // (a background refresh: the next status event tries again if this one fails)
      getJSON("/api/status").then((s) => renderConfig(s.gateway.config)).catch(() => {});
    }
  });
  refresh();
  return unsubscribe;
}
