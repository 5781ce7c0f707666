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


def _version() -> str:
    # The installed distribution's version (pyproject.toml's, one place to change it); a source
    # tree that was never installed has none.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("shopfloor-gateway")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = _version()

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
