"""Shop-floor data gateway: OPC UA and MQTT machine data into a time-series store, without loss."""

from gateway.errors import (
    ConfigError,
    DecodeError,
    GatewayError,
    PointError,
    SinkError,
    SinkRejected,
    SinkUnauthorized,
    SinkUnavailable,
    SourceError,
)
from gateway.point import Point

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DecodeError",
    "GatewayError",
    "Point",
    "PointError",
    "SinkError",
    "SinkRejected",
    "SinkUnauthorized",
    "SinkUnavailable",
    "SourceError",
    "__version__",
]
