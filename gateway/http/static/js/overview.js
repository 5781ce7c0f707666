// Overview: one card per machine with its key values, a state badge and the age of the last update.

import { getJSON, subscribe } from "./api.js";
import { h, fill } from "./dom.js";
import { t, formatAge, formatValue, displayLabel } from "./i18n.js";

const MAX_VALUES = 8;

/** A value's <dd>: while the source says it is bad or uncertain, the last value is struck out
 *  (bad) or greyed (uncertain) beside the status name, e.g. "BadSensorFailure". */
export function valueCell(v, attrs = {}) {
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
    el.dataset.hasState = String(card.state_value !== null && card.state_value !== undefined);
    const sub = Object.entries(card.tags).slice(0, -1).map(([k, v]) => `${k} ${v}`).join(" · ");
    // The key fields (overview.key_fields) when the machine has any, else the first fields by name.
    const keyed = card.values.filter((v) => v.key);
    const shown = keyed.length ? keyed : card.values;
    const values = shown.slice(0, MAX_VALUES);
    fill(el,
      h("div", { class: "card-head" },
        h("span", { class: "card-title" }, card.title),
        h("span", { class: "badge", dataset: { state: card.state } }, t(`state.${card.state}`))),
      sub ? h("div", { class: "card-sub" }, sub) : null,
      h("dl", { class: "kv" }, values.flatMap((v) => [
        h("dt", {}, displayLabel(v)),
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
      const state = last > 0 && age > latest.offline_after ? "offline" : el.dataset.reported;
      el.dataset.state = state;
      const badge = el.querySelector(".badge");
      badge.dataset.state = state;
      badge.textContent = t(`state.${state}`);
      // Meters and sensors have no state: their card only shows a badge when offline.
      badge.hidden = state === "unknown" && el.dataset.hasState !== "true";
      el.querySelector(".age").textContent = last > 0 ? t("age.updated", { age: formatAge(age) }) : t("age.never");
    }
  }

  const timer = setInterval(tick, 1000);
  const unsubscribe = subscribe("overview", render);
  getJSON("/api/overview").then((data) => { if (!latest) render(data); }).catch((e) => console.error(e));
  return () => { clearInterval(timer); unsubscribe(); };
}
