"""Moved to :mod:`gateway.mqtt.wire` (shared by the MQTT connector, the MQTT sink and Sparkplug B).

This module re-exports it for code written against the old path; new code imports
``gateway.mqtt.wire``.
"""

from __future__ import annotations

from gateway.mqtt.wire import *  # noqa: F403 - the whole public codec, as before the move
