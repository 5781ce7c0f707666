"""The ``gateway`` command: run | validate | schema | query | browse | simulate | demo."""

from __future__ import annotations

import asyncio
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from gateway.errors import ConfigError, GatewayError

app = typer.Typer(
    name="gateway",
    help="Shop-floor data gateway: OPC UA and MQTT machine data into a time-series store, without loss.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
simulate_app = typer.Typer(
    help="Simulated machines and sensors for demos and tests.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(simulate_app, name="simulate")


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


ConfigPath = Annotated[Path, typer.Argument(help="A YAML config file, or a folder of them (merged).")]
LogFormatOption = Annotated[LogFormat, typer.Option("--log-format", help="text for people, json for log collectors.")]
LogLevelOption = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _load(config: Path):  # type: ignore[no-untyped-def]
    from gateway.config import load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        count = len(exc.problems)
        raise _fail(f"{count} problem{'s' if count != 1 else ''} found; nothing was started.") from None


@app.command()
def run(
    config: ConfigPath,
    log_format: LogFormatOption = LogFormat.text,
    log_level: LogLevelOption = "info",
) -> None:
    """Run the gateway until SIGINT or SIGTERM (then it flushes everything pending and exits 0)."""
    from gateway.logs import setup_logging
    from gateway.runtime import run_gateway

    setup_logging(log_format.value, log_level)
    settings = _load(config)
    try:
        asyncio.run(run_gateway(settings))
    except GatewayError as exc:
        raise _fail(f"error: {exc}") from None


@app.command()
def validate(config: ConfigPath) -> None:
    """Check a config: prints every problem (file:line: key: what is wrong) and exits 1, or exits 0."""
    settings = _load(config)
    typer.echo(
        f"{config}: OK ({len(settings.connectors)} connector{'s' if len(settings.connectors) != 1 else ''}, "
        f"{len(settings.sinks)} sink{'s' if len(settings.sinks) != 1 else ''})"
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the config file (for editor completion and checks)."""
    from gateway.config import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))


@app.command()
def query(
    config: ConfigPath,
    measurement: Annotated[str, typer.Option("--measurement", "-m", help="Measurement to read.")],
    field: Annotated[list[str] | None, typer.Option("--field", "-f", help="Field(s) to read (default: all).")] = None,
    tag: Annotated[
        list[str] | None, typer.Option("--tag", "-t", help="Only series with this tag, as key=value.")
    ] = None,
    since: Annotated[str, typer.Option(help="How far back: 10m, 2h, 7d.")] = "10m",
    until: Annotated[str | None, typer.Option(help="Up to how long ago (default: now).")] = None,
    sink: Annotated[str | None, typer.Option(help="Which historian sink (default: the first).")] = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table, json (one array) or csv.")
    ] = OutputFormat.table,
    limit: Annotated[int, typer.Option(help="Most values to print (0: no limit).")] = 0,
) -> None:
    """Print what landed in the embedded historian (works while the gateway is running)."""
    from gateway.sinks.historian.query import run_query_command

    settings = _load(config)
    tags: dict[str, str] = {}
    for item in tag or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _fail(f"--tag {item!r}: write key=value, e.g. --tag line=A")
        tags[key] = value
    try:
        run_query_command(
            settings,
            measurement=measurement,
            fields=field or [],
            tags=tags,
            since=since,
            until=until,
            sink=sink,
            output=output.value,
            limit=limit,
            out=sys.stdout,
        )
    except (GatewayError, ValueError) as exc:
        raise _fail(f"error: {exc}") from None


@simulate_app.command("mqtt")
def simulate_mqtt(
    broker: Annotated[
        str, typer.Option(help="Broker URL: mqtt://host:1883 or mqtts://host:8883.")
    ] = "mqtt://localhost:1883",
    rate: Annotated[float, typer.Option(help="Messages per second, in total.")] = 10.0,
    lines: Annotated[int, typer.Option(help="Production lines (each with meters, sensors and machines).")] = 2,
    meters: Annotated[int, typer.Option(help="Energy meters per line.")] = 3,
    machines: Annotated[int, typer.Option(help="Machines per line.")] = 2,
    qos: Annotated[int, typer.Option(help="QoS of the published messages (0, 1 or 2).")] = 1,
    duration: Annotated[
        str | None, typer.Option(help="Stop after this long (e.g. 10m); default: run until Ctrl-C.")
    ] = None,
    count: Annotated[int, typer.Option(help="Stop after this many messages (0: no limit).")] = 0,
    seed: Annotated[int | None, typer.Option(help="Seed for a reproducible run.")] = None,
    prefix: Annotated[str, typer.Option(help="First topic segment.")] = "factory",
    protocol: Annotated[str, typer.Option(help="MQTT protocol version: 5 or 3.1.1.")] = "5",
) -> None:
    """Publish realistic shop-floor data: energy meters, temperatures, machine states."""
    from gateway.logs import setup_logging
    from gateway.simulators.mqtt import SimulatorSettings, run_mqtt_simulator
    from gateway.units import parse_duration

    setup_logging("text", "info")
    settings = SimulatorSettings(
        broker=broker,
        rate=rate,
        lines=lines,
        meters=meters,
        machines=machines,
        qos=qos,
        duration=parse_duration(duration) if duration else None,
        count=count,
        seed=seed,
        prefix=prefix,
        protocol=protocol,
    )
    try:
        asyncio.run(run_mqtt_simulator(settings))
    except KeyboardInterrupt:
        pass
    except GatewayError as exc:
        raise _fail(f"error: {exc}") from None


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port of the web page (when the web page exists).")] = 8080,
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its data.")] = Path("data/demo"),
    duration: Annotated[str | None, typer.Option(help="Stop after this long (default: until Ctrl-C).")] = None,
) -> None:
    """Run simulators and the gateway together, into the embedded historian: no external service needed."""
    from gateway.demo import run_demo
    from gateway.logs import setup_logging
    from gateway.units import parse_duration

    setup_logging("text", "info")
    try:
        asyncio.run(run_demo(data_dir=data_dir, port=port, duration=parse_duration(duration) if duration else None))
    except KeyboardInterrupt:
        pass
    except GatewayError as exc:
        raise _fail(f"error: {exc}") from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
