// Overview: one card per machine with its key values, a state badge and the age of the last update.

import { getJSON, subscribe } from "./api.js";
import { h, fill } from "./dom.js";
import { t, formatAge, formatClock, formatValue, formatPercent, displayLabel, labelLang } from "./i18n.js";
import { machines, matches, currentState, todayOee } from "./kpi.js";

const MAX_VALUES = 8;

/** "offline: death certificate at 10:02": why a card or a value is offline after a Sparkplug B
 *  NDEATH / DDEATH (``since``: unix seconds, when the gateway received it). */
export function deathText(since) {
  return t("offline.death", { time: formatClock(since * 1000) });
}

/** A value's <dd>: while the source says it is bad or uncertain, the last value is struck out
 *  (bad) or greyed (uncertain) beside the status name, e.g. "BadSensorFailure"; while a death
 *  certificate says its source is gone, the last value is greyed beside "offline". */
export function valueCell(v, attrs = {}) {
  if (v.offline_since) {
    return h("dd", { ...attrs, class: "v-offline", title: deathText(v.offline_since) },
      h("span", { class: "q-value" }, formatValue(v.value, v)),
      h("span", { class: "q-status" }, t("state.offline")));
  }
  const quality = v.quality || "good";
  if (quality === "good") return h("dd", attrs, formatValue(v.value, v));
  const label = t(`quality.${quality}`);
  const shown = formatValue(v.value, v);
  return h("dd", { ...attrs, class: `q-${quality}`, title: v.status ? `${label}: ${v.status}` : label },
    h(quality === "bad" ? "s" : "span", { class: "q-value" }, shown),
    h("span", { class: "q-status" }, v.status || label));
}

export function showOverview(root) {
  const grid = h("div", { class: "cards", id: "cards" });
  const empty = h("p", { class: "empty", id: "cards-empty", hidden: true }, t("overview.empty"));
  root.append(h("h1", {}, t("overview.title")), empty, grid);
  let latest = null;
  let offset = 0; // server clock − browser clock, in ms
  let configured = []; // machines with KPIs (api/machines): their state category and today's OEE

  function render(data) {
    latest = data;
    offset = data.server_time * 1000 - Date.now();
    empty.hidden = data.cards.length > 0;
    const existing = new Map([...grid.children].map((el) => [el.dataset.id, el]));
    const order = [];
    for (const card of data.cards) {
      const el = existing.get(card.id) || h("a", { class: "card", dataset: { id: card.id } });
      fillCard(el, card);
      existing.delete(card.id);
      order.push(el);
    }
    for (const el of existing.values()) el.remove();
    order.forEach((el, i) => { if (grid.children[i] !== el) grid.insertBefore(el, grid.children[i] || null); });
    tick();
  }

  function fillCard(el, card) {
    el.href = `#/machine/${encodeURIComponent(card.id)}`;
    el.dataset.lastUpdate = String(card.last_update);
    el.dataset.reported = card.state;
    // A death certificate (Sparkplug B NDEATH / DDEATH): offline at once, whatever the age says.
    el.dataset.offlineReason = card.offline_reason || "";
    el.dataset.offlineSince = card.offline_since ? String(card.offline_since) : "";
    el.dataset.hasState = String(card.state_value !== null && card.state_value !== undefined);
    const sub = Object.entries(card.tags).slice(0, -1).map(([k, v]) => `${k} ${v}`).join(" · ");
    // The key fields (overview.key_fields) when the machine has any, else the first fields by name.
    const keyed = card.values.filter((v) => v.key);
    const shown = keyed.length ? keyed : card.values;
    const values = shown.slice(0, MAX_VALUES);
    const machine = configured.find((m) => matches(m, card.id, card.tags));
    const state = machine ? currentState(machine) : null;
    el.dataset.category = state && state.category ? state.category : "";
    el.dataset.rawState = state && state.value !== undefined && state.value !== null ? String(state.value) : "";
    const oee = machine ? todayOee(machine) : undefined;
    fill(el,
      h("div", { class: "card-head" },
        h("span", { class: "card-title" }, card.title),
        h("span", { class: "badge", dataset: { state: card.state } }, t(`state.${card.state}`))),
      sub ? h("div", { class: "card-sub" }, sub) : null,
      machine ? h("div", { class: "card-kpi", dataset: { oee: oee ?? "" } },
        h("span", { class: "muted" }, t("kpi.today.card")), " ",
        h("strong", { class: "card-oee" }, formatPercent(oee ?? null))) : null,
      h("dl", { class: "kv" }, values.flatMap((v) => [
        h("dt", { lang: labelLang(v) }, displayLabel(v)),
        valueCell(v, { dataset: { field: v.field, quality: v.quality || "good" } }),
      ])),
      card.values.length > values.length ? h("div", { class: "muted more" }, t("overview.more", { n: card.values.length - values.length })) : null,
      h("div", { class: "age" }, ""),
    );
  }

  // Every second: ages move on, and a machine that went silent turns offline even if no
  // new event arrives.
  function tick() {
    if (!latest) return;
    const now = (Date.now() + offset) / 1000;
    for (const el of grid.children) {
      const last = Number(el.dataset.lastUpdate);
      const age = now - last;
      const dead = el.dataset.offlineReason === "death";
      const offline = dead || (last > 0 && age > latest.offline_after);
      const state = offline ? "offline" : el.dataset.reported;
      el.dataset.state = state;
      const badge = el.querySelector(".badge");
      badge.dataset.state = state;
      // A machine with KPIs: its state category (running, down, setup, planned stop …).
      const category = offline ? "" : el.dataset.category;
      if (category) badge.dataset.category = category; else delete badge.dataset.category;
      badge.textContent = category ? t(`cat.${category}`) : t(`state.${state}`);
      const reason = dead ? deathText(Number(el.dataset.offlineSince)) : "";
      badge.title = reason || (category && el.dataset.rawState && el.dataset.rawState !== category ? el.dataset.rawState : "");
      // Meters and sensors have no state: their card only shows a badge when offline.
      badge.hidden = state === "unknown" && el.dataset.hasState !== "true" && !category;
      // A dead machine's age line says why it is offline and since when, not how fresh its last values are.
      const ageLine = el.querySelector(".age");
      ageLine.textContent = reason || (last > 0 ? t("age.updated", { age: formatAge(age) }) : t("age.never"));
      if (dead) ageLine.dataset.reason = "death"; else delete ageLine.dataset.reason;
    }
  }

  // What a card shows of a configured machine; the cards are redrawn only when it changes.
  const shownOf = (list) => JSON.stringify(list.map((m) => [m.name, m.category, m.value, todayOee(m)]));
  function setMachines(list) {
    const before = shownOf(configured);
    configured = list;
    if (latest && shownOf(list) !== before) render(latest);
  }

  const timer = setInterval(tick, 1000);
  // The kpi event (every 2 s with machines: configured) carries every machine as /api/machines does.
  const unsubscribeKpi = subscribe("kpi", (list) => { if (Array.isArray(list)) setMachines(list); });
  const machinesTimer = setInterval(() => machines({ fresh: true }).then(setMachines), 60e3);
  const unsubscribe = subscribe("overview", render);
  getJSON("/api/overview").then((data) => { if (!latest) render(data); }).catch((e) => console.error(e));
  machines({ fresh: true }).then(setMachines);
  return () => { clearInterval(timer); clearInterval(machinesTimer); unsubscribe(); unsubscribeKpi(); };
}
