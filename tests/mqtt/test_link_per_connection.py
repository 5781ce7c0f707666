"""The MQTT link's options for protocols whose messages belong to one connection (Sparkplug B).

Against a real Mosquitto and an independent paho subscriber:

- ``will`` given as a function: each CONNECT carries the will it returns at that moment, so the
  will a subscriber receives after the second connection died is the second one;
- ``resend_on_reconnect=False``: publishes the broker had not acknowledged when the connection
  ended fail with ConnectionLost and are not sent again on the next connection; the link itself
  reconnects and publishes afterwards go out as usual.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from gateway.mqtt.link import ConnectionLost, MqttLink, Will
from tests.fixtures.mosquitto import Mosquitto
from tests.helpers import async_wait_until
from tests.mqtt.test_link import Recorder, Subscriber, options


async def test_a_will_given_as_a_function_is_asked_for_at_every_connect(mosquitto: Mosquitto) -> None:
    made: list[int] = []

    def will() -> Will:
        made.append(len(made) + 1)
        return Will("gw/death", str(made[-1]).encode(), qos=1)

    witness = Subscriber(mosquitto, "gw/death", client_id="will-witness")
    try:
        link_options = options(mosquitto, "gw-will-fn", will=will, clean_start=True)
        async with MqttLink(link_options, events := Recorder()) as link:
            for expected in (b"1", b"2"):
                wills = int(expected)
                await async_wait_until(lambda: link.connected and len(made) == wills, timeout=30)  # noqa: B023 - awaited in this iteration
                conn = link._conn
                assert conn is not None and conn.transport is not None
                conn.transport.abort()  # the connection dies: the broker publishes its will
                message = await asyncio.to_thread(witness.get)
                assert message.payload == expected
            await async_wait_until(lambda: len(events.of("connected")) == 3, timeout=30)
        assert made == [1, 2, 3]
    finally:
        witness.close()


async def test_without_resend_publishes_cut_off_by_a_lost_connection_fail_and_are_not_sent_again(
    mosquitto: Mosquitto,
) -> None:
    witness = Subscriber(mosquitto, "cut/#", client_id="cut-witness", clean=False)
    try:
        link_options = options(mosquitto, "gw-no-resend", resend_on_reconnect=False, clean_start=True)
        async with MqttLink(link_options, events := Recorder()) as link:
            await async_wait_until(lambda: link.connected, timeout=30)
            process = mosquitto.process
            assert process is not None
            os.kill(process.pid, signal.SIGSTOP)  # the broker hangs: nothing is acknowledged
            try:
                sending = asyncio.create_task(link.publish_many([(f"cut/{i}", b"old") for i in range(50)]))
                await async_wait_until(lambda: link.in_flight == 50, timeout=30)
            finally:
                mosquitto.kill()  # it never saw them
            with pytest.raises(ConnectionLost, match=r"ended before it acknowledged the message"):
                await asyncio.wait_for(sending, 30)
            assert link.in_flight == 0 and link.queued == 0
            await asyncio.to_thread(mosquitto.start)
            await async_wait_until(lambda: len(events.of("connected")) == 2 and link.connected, timeout=30)
            await asyncio.to_thread(witness.ready.get, True, 30)  # the witness is subscribed again
            await link.publish("cut/new", b"new", qos=1)
            assert link.resent == 0
        message = await asyncio.to_thread(witness.get)
        assert (message.topic, message.payload) == ("cut/new", b"new")  # nothing old came before it
    finally:
        witness.close()
