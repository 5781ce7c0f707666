// A warning for the admin, under the header, when passwords and tokens cross the network in
// clear text: the gateway listens beyond loopback over plain HTTP (no gateway.http.tls).

import { getJSON } from "./api.js";
import { lang, onLanguage } from "./i18n.js";
import { h } from "./dom.js";

const TEXT = {
  en: "Passwords and tokens reach this gateway unencrypted (plain HTTP on the network). "
    + "Set gateway.http.tls: {cert, key} in its configuration to serve the page over HTTPS.",
  it: "Password e token arrivano a questo gateway in chiaro (HTTP senza cifratura sulla rete). "
    + "Imposta gateway.http.tls: {cert, key} nella sua configurazione per servire la pagina in HTTPS.",
};

export function showPlainHttpBanner(header) {
  getJSON("/api/whoami").then((who) => {
    if (who.role !== "admin" || !who.plain_http) return;
    const banner = h("div", { class: "banner-warning", id: "plain-http-banner", role: "alert" });
    const render = () => {
      const code = TEXT[lang()] ? lang() : "en";
      banner.lang = code;
      banner.textContent = TEXT[code];
    };
    render();
    onLanguage(render);
    header.after(banner);
  }).catch(() => {});
}
