"""Siemens S7 connector (``type: s7``): S7-300/400 and S7-1200/1500 PLCs over ISO-on-TCP.

Importing this package registers the connector type; see README.md and sample.yaml.
"""

from __future__ import annotations

from typing import Any

from connectors.s7.config import S7Config, S7Field
from gateway.component import RuntimeContext, Source
from gateway.registry import register

__all__ = ["S7Config", "S7Field", "create_source"]


def create_source(config: Any, context: RuntimeContext) -> Source:
    """The registry's factory: builds the source (python-snap7 is imported only here, on first use)."""
    from connectors.s7.source import S7Source

    assert isinstance(config, S7Config)
    return S7Source(config, context)


register("connector", "s7", S7Config, create_source)
