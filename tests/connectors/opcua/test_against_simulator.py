"""The OPC UA connector against the project's machine simulator, into the embedded historian.

What a user checks: the values, their types, the tags and the machine's own (source)
timestamps that land in the store are the ones the server holds.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.object_ids import ObjectIds

from connectors.opcua.nodes import field_name
from gateway.config import load_config
from gateway.runtime import Gateway
from tests.fixtures.opcua import gateway_config, opcua_subscribed, stored
from tests.helpers import async_wait_until

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _expected(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value


async def _server_values(endpoint: str) -> dict[str, tuple[Any, int, str]]:
    """Every variable below Objects/Machine as an independent client reads it: field → (value, source ns, type)."""
    result: dict[str, tuple[Any, int, str]] = {}
    async with Client(endpoint) as client:
        machine = None
        for child in await client.nodes.objects.get_children():
            if (await child.read_browse_name()).Name == "Machine":
                machine = child
        assert machine is not None

        async def walk(node: Any, path: tuple[str, ...]) -> None:
            for child in await node.get_children(refs=ObjectIds.HierarchicalReferences):
                name = (await child.read_browse_name()).Name
                if await child.read_node_class() == ua.NodeClass.Variable:
                    if name in ("EnumStrings", "EngineeringUnits"):  # properties: not collected
                        continue
                    dv = await child.read_data_value()
                    value = dv.Value.Value
                    kind = dv.Value.VariantType.name
                    if isinstance(value, list):
                        for index, element in enumerate(value):
                            result[f"{field_name((*path, name))}_{index}"] = (element, _ns(dv.SourceTimestamp), kind)
                    else:
                        result[field_name((*path, name))] = (value, _ns(dv.SourceTimestamp), kind)
                else:
                    await walk(child, (*path, name))

        await walk(machine, ())
    return result


def _connector(name: str, endpoint: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "opcua",
        "endpoint": endpoint,
        "measurement": "machine",
        "tags": {"line": "A", "machine": name},
        "subscription": {"publishing_interval": "200ms", "sampling_interval": "100ms"},
        "nodes": [{"browse": "Objects/Machine", "recursive": True}],
    }


async def test_fifty_mixed_variables_land_as_the_server_holds_them(opcua_simulator: Any, tmp_path: Path) -> None:
    sim = opcua_simulator(machines=2, bad_rate=0, interval=1.0)
    config = gateway_config(tmp_path, [_connector("cnc-01", sim.endpoint(0)), _connector("press-01", sim.endpoint(1))])
    async with Gateway(load_config(config)) as gateway:
        # Read once the gateway has subscribed: the simulator moves every second, and a value
        # read before would be gone before the gateway could be told of it.
        await opcua_subscribed(gateway)
        # The simulator's AnalogItems publish EngineeringUnits; the connector found them.
        assert gateway.units[("machine", "spindle_speed")] == "rpm"
        assert gateway.units[("machine", "cycle_cushion")] == "mm"
        assert ("machine", "spindle_override") not in gateway.units  # a plain variable
        expected = {name: await _server_values(sim.endpoint(i)) for i, name in enumerate(("cnc-01", "press-01"))}
        # The structure (a Range) cannot be stored: it is skipped with one warning, never stored.
        for values in expected.values():
            values.pop("spindle_speed_range", None)
        total = sum(len(v) for v in expected.values())
        assert total >= 50, total
        kinds = {kind for values in expected.values() for _, _, kind in values.values()}
        assert {"Double", "Float", "Boolean", "String", "DateTime", "Int16", "UInt32", "UInt64", "Int32"} <= kinds

        def landed() -> dict[tuple[str, str, int], Any]:
            return {(v.tags["machine"], v.field, v.time): v for v in stored(tmp_path, "machine")}

        def missing() -> list[str]:
            have = landed()
            return [
                f"{machine}/{field}"
                for machine, values in expected.items()
                for field, (_, source_ns, _) in values.items()
                if (machine, field, source_ns) not in have
            ]

        await async_wait_until(lambda: not missing(), timeout=60, interval=0.5, message="every value read in the store")
        have = landed()
        for machine, values in expected.items():
            for field, (value, source_ns, kind) in values.items():
                got = have[(machine, field, source_ns)]
                want = _expected(value)
                assert type(got.value) is type(want), (machine, field, kind, got.value, want)
                if isinstance(want, float):
                    assert math.isclose(got.value, want, rel_tol=0, abs_tol=0), (machine, field, got.value, want)
                else:
                    assert got.value == want, (machine, field, got.value, want)
                assert got.tags == {"line": "A", "machine": machine}, got.tags
        assert not any(v.field.startswith("spindle_speed_range") for v in stored(tmp_path, "machine"))
        statuses = {s.name: s for s in gateway.statuses()}
        assert statuses["cnc-01"].detail["monitored_items"] >= 40
        assert statuses["cnc-01"].counters["skipped"] >= 1
        assert statuses["cnc-01"].state.value == "running"
