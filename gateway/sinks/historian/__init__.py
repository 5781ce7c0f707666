"""The embedded historian (``type: historian``): one local SQLite file, no server needed.

Registers itself on import; see README.md and sample.yaml. The read API for other parts of
the gateway (HTTP API, ``gateway query``) is :class:`~gateway.sinks.historian.store.HistorianStore`.
"""

from __future__ import annotations

from pydantic import BaseModel

from gateway.component import RuntimeContext
from gateway.registry import register
from gateway.sinks.historian.config import HistorianConfig
from gateway.sinks.historian.sink import HistorianSink

__all__ = ["HistorianConfig", "HistorianSink"]


def _build(config: BaseModel, context: RuntimeContext) -> HistorianSink:
    assert isinstance(config, HistorianConfig)
    return HistorianSink(config, context)


register("sink", "historian", HistorianConfig, _build)
