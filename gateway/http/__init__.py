"""The gateway's HTTP side: the web page for pilot firms, the JSON API, /healthz, /readyz, /metrics.

Modules (FastAPI and uvicorn are imported only by :mod:`gateway.http.app` and
:mod:`gateway.http.server`, so loading a config does not pull them in):

- ``config``  — the ``gateway.http`` section (listen address, credentials, overview grouping);
- ``latest``  — the latest value of every series, fed by a tap on every emitted batch;
- ``overview``— machine cards (grouped by tags) and their state badge;
- ``rates``   — per-second rates of the components' counters;
- ``metrics`` — the Prometheus exposition of statuses and counters;
- ``auth``    — viewer/admin access control;
- ``history`` — the embedded historian, read for series lists and downsampled ranges;
- ``app``     — the FastAPI application (API, SSE, static page);
- ``server``  — uvicorn on the gateway's event loop, started and stopped by the runtime.
"""

from gateway.http.config import AuthSettings, Credential, HttpSettings, OverviewSettings

__all__ = ["AuthSettings", "Credential", "HttpSettings", "OverviewSettings"]
