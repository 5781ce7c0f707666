"""Writes to OPC UA nodes through the API: the asyncua CNC simulator and the independent node-opcua
server. What is checked is what a plant engineer checks: the value on the machine (read by a
client of our own, not through the gateway), the answer, the audit line; and for each refusal,
its reason and an unchanged machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asyncua.client.client import Client

from tests.helpers import async_wait_until
from tests.writes.helpers import VIEWER, running

CNC = "urn:lab:cnc"
PEER = "urn:peer:node-opcua:press-line"


async def read(endpoint: str, node: str) -> Any:
    """The node's value as an independent client reads it."""
    async with Client(endpoint) as client:
        namespace, _, identifier = node.partition(";")
        index = (await client.get_namespace_array()).index(namespace.removeprefix("nsu="))
        return await client.get_node(f"ns={index};{identifier}").read_value()


def cnc_connector(endpoint: str) -> dict[str, Any]:
    return {
        "name": "cnc-01",
        "type": "opcua",
        "endpoint": endpoint,
        "measurement": "machine",
        "tags": {"machine": "cnc-01"},
        "subscription": {"publishing_interval": "200ms"},
        "nodes": [
            {
                "node": f"nsu={CNC};s=Program.Selected",
                "field": "program",
                "write": {"allowed": ["O1001", "O1002", "O1003"]},
            },
            {"node": f"nsu={CNC};s=Feed.Override", "field": "feed_override", "write": {"min": 0, "max": 120}},
            {"node": f"nsu={CNC};s=Program.Name", "field": "program_name"},
            # declared writable in the gateway, but read-only on the controller: it refuses writes
            {
                "node": f"nsu={CNC};s=Identification.SerialNumber",
                "field": "serial",
                "write": {"pattern": "^SN-[0-9]+$"},
            },
        ],
    }


async def test_writes_to_the_cnc_simulator(opcua_simulator: Any, tmp_path: Path) -> None:
    sim = opcua_simulator(machines=1, interval=0.2)
    endpoint = sim.endpoint()
    async with running(tmp_path, [cnc_connector(endpoint)]) as gw:
        fields = {f["field"]: f for f in (await gw.client.get("/api/writable", headers=VIEWER)).json()}
        assert fields["feed_override"]["type"] == "integer" and fields["feed_override"]["range"] == [0, 255]  # a Byte
        assert fields["program"]["allowed"] == ["O1001", "O1002", "O1003"] and fields["program"]["type"] == "string"

        answer = await gw.write("cnc-01", "program", "O1002")
        assert (answer["status"], answer["result"], answer["old"], answer["read_back"]) == (
            200,
            "written",
            "O1001",
            "O1002",
        )
        assert await read(endpoint, f"nsu={CNC};s=Program.Selected") == "O1002"
        # the controller loads it: its full name shows from its next update on
        assert await async_wait_until(
            lambda: _equals(read(endpoint, f"nsu={CNC};s=Program.Name"), "O1002 HOUSING-B"),
            timeout=10,
            message="the CNC loaded O1002",
        )
        outcome = gw.outcome(answer["id"])
        assert {
            k: outcome[k] for k in ("result", "user", "role", "connector", "field", "old", "requested", "read_back")
        } == {
            "result": "written",
            "user": "operator token",
            "role": "operator",
            "connector": "cnc-01",
            "field": "program",
            "old": "O1001",
            "requested": "O1002",
            "read_back": "O1002",
        }

        override = await gw.write("cnc-01", "feed_override", 80)
        assert override["result"] == "written" and override["read_back"] == 80
        assert await read(endpoint, f"nsu={CNC};s=Feed.Override") == 80

        # refusals: nothing reaches the machine, or the machine says no; either way it is unchanged
        for field, value, result, words in (
            ("feed_override", 150, "refused_limits", "above the highest value allowed"),
            ("feed_override", 80.5, "refused_type", "not a whole number"),
            ("program", "O9999", "refused_limits", "not one of the values allowed"),
            ("spindle_speed", 1, "not_writable", "not declared writable"),
        ):
            refused = await gw.write("cnc-01", field, value)
            assert (refused["result"], refused["status"] >= 400) == (result, True), refused
            assert words in refused["message"]
            assert gw.outcome(refused["id"])["message"] == refused["message"]
        viewer = await gw.write("cnc-01", "feed_override", 50, headers=VIEWER)
        assert (viewer["status"], viewer["result"]) == (403, "forbidden")
        assert await read(endpoint, f"nsu={CNC};s=Feed.Override") == 80

        serial = await read(endpoint, f"nsu={CNC};s=Identification.SerialNumber")
        denied = await gw.write("cnc-01", "serial", "SN-1")
        assert (denied["status"], denied["result"], denied["code"]) == (
            502,
            "refused_by_machine",
            "BadUserAccessDenied",
        )
        assert "does not let the gateway's user write this node" in denied["message"]
        assert denied["old"] == serial and denied["read_back"] is None
        assert gw.outcome(denied["id"])["code"] == "BadUserAccessDenied"
        assert await read(endpoint, f"nsu={CNC};s=Identification.SerialNumber") == serial


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


def peer_connector(endpoint: str) -> dict[str, Any]:
    nodes = [
        ("Setpoint", "setpoint", {"min": 0, "max": 400}),  # the machine itself takes 0..300
        ("RecipeSelected", "recipe", {"pattern": "^PP-[A-Z0-9-]+$"}),
        ("Clamped", "clamped", {}),
        ("Locked", "locked", {}),
        ("SerialNumber", "serial", {}),
    ]
    return {
        "name": "press-line",
        "type": "opcua",
        "endpoint": endpoint,
        "measurement": "press",
        "tags": {"line": "B"},
        "mode": "poll",
        "poll_interval": "500ms",
        "nodes": [
            {"node": f"nsu={PEER};s=PressLine.{node}", "field": name, "write": limits} for node, name, limits in nodes
        ],
    }


async def test_writes_to_the_node_opcua_server_and_its_refusals(node_opcua_server: Any, tmp_path: Path) -> None:
    server = node_opcua_server(extra_namespaces=1)
    endpoint = server.endpoint()
    async with running(tmp_path, [peer_connector(endpoint)]) as gw:
        written = await gw.write("press-line", "setpoint", 250.5)
        assert (written["result"], written["old"], written["read_back"]) == ("written", 180.0, 250.5)
        assert await read(endpoint, f"nsu={PEER};s=PressLine.Setpoint") == 250.5
        recipe = await gw.write("press-line", "recipe", "PP-CAP-32")
        assert (
            recipe["result"] == "written"
            and await read(endpoint, f"nsu={PEER};s=PressLine.RecipeSelected") == "PP-CAP-32"
        )

        cases = (
            ("setpoint", 350, "BadOutOfRange", "refused the value as outside its own range"),
            ("locked", 2, "BadUserAccessDenied", "does not let the gateway's user write"),
            ("serial", "X", "BadNotWritable", "the node is read-only on the machine"),
        )
        for field, value, code, words in cases:
            refused = await gw.write("press-line", field, value)
            assert (refused["status"], refused["result"], refused["code"]) == (502, "refused_by_machine", code)
            assert words in refused["message"] and "nothing was changed" in refused["message"]
            assert gw.outcome(refused["id"])["code"] == code
        assert await read(endpoint, f"nsu={PEER};s=PressLine.Setpoint") == 250.5
        assert await read(endpoint, f"nsu={PEER};s=PressLine.Locked") == 1.0
        assert await read(endpoint, f"nsu={PEER};s=PressLine.SerialNumber") == "NP-2024-0815"

        # the machine takes the write but keeps its own limit: the read-back tells
        clamped = await gw.write("press-line", "clamped", 150)
        assert (clamped["result"], clamped["read_back"], clamped["code"]) == (
            "refused_by_machine",
            100.0,
            "read-back differs",
        )
        assert "holds 100.0, not 150" in clamped["message"]

        pattern = await gw.write("press-line", "recipe", "pp-lower")
        assert pattern["result"] == "refused_limits"
        assert await read(endpoint, f"nsu={PEER};s=PressLine.RecipeSelected") == "PP-CAP-32"
