// Talking to the gateway: JSON requests and one shared Server-Sent Events stream.

export async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) {
    let detail = "";
    try { detail = (await response.json()).detail; } catch { /* not JSON */ }
    throw new Error(`${response.status} ${detail || response.statusText}`);
  }
  return response.json();
}

/** POST a JSON body; → { status, body }: an answer with a body (a refused write is a 4xx with the
 *  same shape as a written one) is returned, not thrown; no answer at all throws. */
export async function postJSON(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { Accept: "application/json", "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch { /* not JSON */ }
  return { status: response.status, ok: response.ok, body: data };
}

const handlers = new Map(); // event name → Set of callbacks
let source = null;
let stateListener = () => {};

/** Subscribe to a live event ("overview", "status", "kpi"); returns the unsubscribe function. */
export function subscribe(event, callback) {
  if (!handlers.has(event)) handlers.set(event, new Set());
  handlers.get(event).add(callback);
  ensureStream();
  return () => handlers.get(event).delete(callback);
}

export function onStreamState(fn) { stateListener = fn; }

function ensureStream() {
  if (source) return;
  // kpi: the current shift's KPIs of configured machines (a gateway without them sends none).
  source = new EventSource("/api/events?topics=overview,status,kpi");
  stateListener("connecting");
  source.onopen = () => stateListener("open");
  source.onerror = () => stateListener(source.readyState === EventSource.CLOSED ? "error" : "connecting");
  for (const event of ["overview", "status", "kpi"]) {
    source.addEventListener(event, (message) => {
      let data;
      try { data = JSON.parse(message.data); } catch { return; }
      for (const callback of handlers.get(event) || []) callback(data);
    });
  }
}
