"""Modbus connector (``type: modbus``): Modbus TCP, RTU over TCP and serial RTU devices.

Importing this package registers the connector type; see README.md and sample.yaml.
"""

from __future__ import annotations

from typing import Any

from connectors.modbus.config import ModbusConfig, ModbusDevice, ModbusField
from gateway.component import RuntimeContext, Source
from gateway.registry import register

__all__ = ["ModbusConfig", "ModbusDevice", "ModbusField", "create_source"]


def create_source(config: Any, context: RuntimeContext) -> Source:
    """The registry's factory: builds the source (pymodbus is imported only here, on first use)."""
    from connectors.modbus.source import ModbusSource

    assert isinstance(config, ModbusConfig)
    return ModbusSource(config, context)


register("connector", "modbus", ModbusConfig, create_source)
