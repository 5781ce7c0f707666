"""The unit a component is told for a field (``RuntimeContext.field_unit``) is the one the web page
shows: the display config's (``gateway.http.overview.fields``), else one a source found; a
Sparkplug B edge node publishes it in its births."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.config import load_config
from gateway.runtime import Gateway


async def test_a_components_field_unit_is_the_web_pages(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    document = {
        "gateway": {
            "data_dir": str(tmp_path),
            "http": {"overview": {"fields": {"power_w": {"unit": "W"}, "press.zone*_temp": {"unit": "°C"}}}},
        },
        "sinks": [{"name": "local", "type": "historian"}],
        "connectors": [],
    }
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    gateway = Gateway(load_config(path))
    context = gateway._context("sink", "local")
    assert context.field_unit("energy", "power_w") == "W"
    assert context.field_unit("press", "zone3_temp") == "°C"
    assert context.field_unit("other", "zone3_temp") == ""
    gateway.units[("press", "pressure")] = "bar"  # found by a source (OPC UA EngineeringUnits)
    assert context.field_unit("press", "pressure") == "bar"
