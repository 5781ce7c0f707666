// The page: a hash router over three views (overview, machine, connections), the language
// switch and the live-stream indicator.

import { applyStatic, onLanguage, setLanguage } from "./i18n.js";
import { onStreamState } from "./api.js";
import { clear } from "./dom.js";
import { showOverview } from "./overview.js";
import { showMachine } from "./machine.js";
import { showConnections } from "./connections.js";
import { showPlainHttpBanner } from "./banner.js";

const view = document.getElementById("view");
let leave = null; // cleanup of the current view

function route() {
  if (leave) { try { leave(); } catch (e) { console.error(e); } leave = null; }
  clear(view);
  const hash = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  let active = "overview";
  if (hash.startsWith("/machine/")) {
    leave = showMachine(view, hash.slice("/machine/".length));
  } else if (hash === "/connections") {
    active = "connections";
    leave = showConnections(view);
  } else {
    leave = showOverview(view);
  }
  for (const name of ["overview", "connections"]) {
    document.getElementById(`nav-${name}`).classList.toggle("active", name === active);
  }
}

for (const button of document.querySelectorAll("[data-lang]")) {
  button.addEventListener("click", () => setLanguage(button.dataset.lang));
}
onStreamState((state) => { document.getElementById("live").dataset.state = state; });
onLanguage(route);
window.addEventListener("hashchange", route);
applyStatic();
fetch("/api/status").then((r) => r.json()).then((s) => {
  document.getElementById("brand").textContent = s.gateway.name;
  document.title = s.gateway.name;
}).catch(() => {});
route();
showPlainHttpBanner(document.querySelector("header.top"));
