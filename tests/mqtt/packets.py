"""MQTT packets in a byte stream, for tests that watch or script what goes over the wire."""

from __future__ import annotations

__all__ = ["split_packets"]


def split_packets(data: bytes) -> tuple[list[bytes], bytes]:
    """Whole MQTT packets at the start of ``data``, and the rest (an incomplete packet, or nothing)."""
    packets: list[bytes] = []
    while data:
        length, multiplier, i = 0, 1, 1
        while True:
            if i >= len(data):
                return packets, data
            byte = data[i]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            i += 1
            if not byte & 0x80:
                break
        if len(data) < i + length:
            return packets, data
        packets.append(data[: i + length])
        data = data[i + length :]
    return packets, data
