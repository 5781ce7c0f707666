"""MQTT as the gateway speaks it, shared by every component that talks to a broker.

- :mod:`gateway.mqtt.wire` — MQTT 3.1.1 and 5 packets as bytes and back, without I/O;
- :mod:`gateway.mqtt.link` — :class:`~gateway.mqtt.link.MqttLink`, one connection to a broker
  with its session, kept alive on the asyncio loop (receiving with acknowledgement after
  storage, publishing with ``publish_many``);
- :mod:`gateway.mqtt.config` — the broker connection's options (URL, client id, protocol,
  credentials, TLS, keep-alive, session, reconnection) as a config model that every MQTT
  component offers the same way.

Why here and not under ``connectors/mqtt/``: the MQTT connector, the MQTT sink
(``gateway/sinks/mqtt``) and Sparkplug B all use the same link, and a sink must not import a
connector (the import contracts in pyproject.toml). This package sits below both in the
layers and imports nothing but the core. ``connectors/mqtt/_client.py`` (which keeps the
connector's ``LinkOptions.from_config``) and ``_wire.py`` re-export it for code written against
the old paths.
"""
