"""InfluxDB sink (``type: influxdb``): InfluxDB 2.x/3.x/Cloud through the v2 write API, or
InfluxDB 1.x with ``api: v1``. Registers itself on import; see README.md and sample.yaml."""

from __future__ import annotations

from pydantic import BaseModel

from gateway.component import RuntimeContext
from gateway.registry import register
from gateway.sinks.influxdb.config import InfluxDBConfig, TlsOptions
from gateway.sinks.influxdb.sink import InfluxDBSink

__all__ = ["InfluxDBConfig", "InfluxDBSink", "TlsOptions"]


def _build(config: BaseModel, context: RuntimeContext) -> InfluxDBSink:
    assert isinstance(config, InfluxDBConfig)
    return InfluxDBSink(config, context)


register("sink", "influxdb", InfluxDBConfig, _build)
