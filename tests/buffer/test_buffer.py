"""The durable buffer's files: :class:`SegmentLog` checked directly (restart, damage, bounds,
exact counts).

The disk queue on top of them (group commit, acknowledgements, overflow, gauges, moving a
folder) is in test_disk_queue.py; the route's behaviour with either queue in tests/route/.
Real stores are in tests/runtime/test_no_loss.py and tests/sinks/influxdb/test_stores.py.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.buffer import SegmentLog
from gateway.buffer._segments import HEADER_SIZE, segment_name
from gateway.errors import GatewayError
from gateway.lineprotocol import encode_batch, parse
from gateway.point import Point
from tests.helpers import examples

T0 = 1_700_000_000_000_000_000


def lines(start: int, count: int) -> tuple[bytes, int]:
    """A record body of ``count`` distinct points numbered from ``start``."""
    return encode_batch(Point("m", {"v": i}, {"s": "a"}, T0 + i) for i in range(start, start + count)), count


def numbers(body: bytes) -> list[int]:
    return [int(p.fields["v"]) for p in parse(body.decode())]


def open_log(path: Path, **kwargs: object) -> SegmentLog:
    log = SegmentLog(path, max_size=kwargs.pop("max_size", 1 << 30), **kwargs)  # type: ignore[arg-type]
    log.open()
    return log


def drain_all(log: SegmentLog, max_points: int = 1000) -> list[int]:
    got: list[int] = []
    while (batch := log.read(max_points)) is not None:
        got += numbers(batch.body)
        log.ack(batch)
    return got


# --- SegmentLog ----------------------------------------------------------------------------------


def test_append_read_ack_in_order_and_files_deleted(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_size=4096)
    for start in range(0, 1000, 100):
        log.append([lines(start, 50), lines(start + 50, 50)])
    assert log.depth_points == log.unread_points == 1000
    assert len(list(tmp_path.glob("seg-*.log"))) > 2
    assert drain_all(log, 120) == list(range(1000))
    assert log.depth_points == 0 and log.depth_bytes == 0
    assert len(list(tmp_path.glob("seg-*.log"))) <= 1  # only the file still being written to
    log.close()


def test_batches_never_exceed_max_points_but_hold_at_least_one_record(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 30), lines(30, 30), lines(60, 500)])
    sizes = []
    while (batch := log.read(100)) is not None:
        sizes.append(batch.count)
        log.ack(batch)
    assert sizes == [60, 500]
    log.close()


def test_restart_resumes_after_the_last_confirmed_batch(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_size=2048)
    for start in range(0, 600, 60):
        log.append([lines(start, 60)])
    first = log.read(120)
    assert first is not None
    log.ack(first)
    second = log.read(120)  # read, handed to the store, never confirmed: the gateway dies here
    assert second is not None
    log.close()

    again = open_log(tmp_path, segment_size=2048)
    assert again.depth_points == 480
    assert drain_all(again) == list(range(120, 600))
    again.close()
    third = open_log(tmp_path)
    assert third.depth_points == 0 and third.read(10) is None
    third.close()


def test_a_lagging_ack_file_resends_and_never_loses(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10), lines(10, 10), lines(20, 10)])
    stale = (tmp_path / "ack").read_text()
    batch = log.read(10)
    assert batch is not None
    log.ack(batch)
    log.close()
    (tmp_path / "ack").write_text(stale)  # the rename did not reach the disk before a power cut
    again = open_log(tmp_path)
    assert drain_all(again) == list(range(30))  # the confirmed 10 again: duplicates, which overwrite
    again.close()


def test_an_unreadable_ack_file_resends_everything(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10), lines(10, 10)])
    log.close()
    (tmp_path / "ack").write_bytes(b"\x00\x00garbage")
    with caplog.at_level(logging.WARNING):
        again = open_log(tmp_path)
    assert "unreadable" in caplog.text
    assert drain_all(again) == list(range(20))
    again.close()


def test_segment_numbers_never_go_back_after_everything_was_confirmed(tmp_path: Path) -> None:
    log = open_log(tmp_path, segment_size=1024)
    for start in range(0, 400, 40):
        log.append([lines(start, 40)])
    drain_all(log)
    log.close()
    again = open_log(tmp_path, segment_size=1024)
    again.append([lines(1000, 5)])
    again.close()
    # A third start must not take the new segment for one the ack file says was confirmed.
    third = open_log(tmp_path)
    assert drain_all(third) == list(range(1000, 1005))
    third.close()


def test_a_second_gateway_cannot_use_the_same_folder(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    with pytest.raises(GatewayError, match="in use by another running gateway"):
        open_log(tmp_path)
    log.close()
    open_log(tmp_path).close()


def test_a_torn_last_record_is_cut_off_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10)])
    log.append([lines(10, 10)])
    log.close()
    segment = next(tmp_path.glob("seg-*.log"))
    size = segment.stat().st_size
    with segment.open("r+b") as file:  # the second record was half written when the power went
        file.truncate(size - 40)
    with caplog.at_level(logging.WARNING):
        again = open_log(tmp_path)
    assert "was being written when the gateway stopped" in caplog.text
    assert again.damage and again.damage[0].torn_tail
    assert not (tmp_path / "quarantine").exists()
    assert drain_all(again) == list(range(10))
    again.append([lines(100, 3)])  # and writing goes on after the cut
    assert drain_all(again) == [100, 101, 102]
    again.close()


def _flip_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        byte = file.read(1)
        file.seek(offset)
        file.write(bytes([byte[0] ^ 0xFF]))


def test_a_damaged_record_is_quarantined_skipped_and_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10)])
    log.append([lines(10, 10)])
    log.append([lines(20, 10)])
    log.close()
    segment = next(tmp_path.glob("seg-*.log"))
    record = len(lines(0, 10)[0]) + HEADER_SIZE
    _flip_byte(segment, record + HEADER_SIZE + 5)  # inside the second record's body
    with caplog.at_level(logging.ERROR):
        again = open_log(tmp_path)  # no crash: a damaged buffer must never stop the gateway
    assert "is damaged at bytes" in caplog.text
    quarantined = list((tmp_path / "quarantine").iterdir())
    assert len(quarantined) == 1 and quarantined[0].read_bytes() != segment.read_bytes()
    assert [d.start for d in again.damage] == [record]
    assert again.depth_points == 20
    assert drain_all(again) == list(range(10)) + list(range(20, 30))
    again.close()


def test_a_damaged_header_is_skipped_to_the_next_valid_record(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    for start in range(0, 50, 10):
        log.append([lines(start, 10)])
    log.close()
    segment = next(tmp_path.glob("seg-*.log"))
    third = sum(len(lines(start, 10)[0]) + HEADER_SIZE for start in (0, 10))
    _flip_byte(segment, third + 6)  # the length field of the third record
    again = open_log(tmp_path)
    assert drain_all(again) == list(range(20)) + list(range(30, 50))
    again.close()


def test_damage_found_while_running_is_skipped_and_the_counts_corrected(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10)])
    log.append([lines(10, 10)])
    log.append([lines(20, 10)])
    segment = next(tmp_path.glob("seg-*.log"))
    _flip_byte(segment, len(lines(0, 10)[0]) + 2 * HEADER_SIZE + 3)
    assert drain_all(log) == list(range(10)) + list(range(20, 30))
    assert log.damage and log.damage[0].points_lost == 10
    assert log.depth_points == 0 and log.unread_points == 0
    assert (tmp_path / "quarantine").exists()
    log.close()


def test_drop_oldest_keeps_the_disk_bound_and_counts_exactly(tmp_path: Path) -> None:
    max_size = 64 * 1024
    log = open_log(tmp_path, max_size=max_size)
    dropped = 0
    for start in range(0, 20_000, 100):
        dropped += log.append([lines(start, 100)])
        assert log.disk_bytes <= max_size
    kept = drain_all(log)
    assert dropped > 0
    assert dropped + len(kept) == 20_000
    assert kept == list(range(20_000 - len(kept), 20_000))  # the newest survive, in order
    log.close()


def test_points_in_flight_when_their_file_is_dropped_are_written_not_counted_dropped(tmp_path: Path) -> None:
    log = open_log(tmp_path, max_size=16 * 1024, segment_size=4096)
    log.append([lines(0, 50)])
    inflight = log.read(50)  # handed to the store, which is slow to answer
    assert inflight is not None
    dropped = 0
    for start in range(50, 3000, 50):
        dropped += log.append([lines(start, 50)])
    log.ack(inflight)  # the store had it after all
    kept = drain_all(log)
    assert 50 + dropped + len(kept) == 3000
    assert log.depth_points == 0
    log.close()


def test_release_hands_the_batch_out_again(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    log.append([lines(0, 10), lines(10, 10)])
    batch = log.read(10)
    assert batch is not None
    assert log.release(batch) == 0
    assert log.unread_points == 20
    assert drain_all(log) == list(range(20))
    log.close()


def test_oldest_age_is_the_first_unconfirmed_record(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    assert log.oldest_ns() is None
    before = time.time_ns()
    log.append([lines(0, 5)])
    first = log.oldest_ns()
    assert first is not None and first >= before
    log.append([lines(5, 5)])
    batch = log.read(5)
    assert batch is not None
    log.ack(batch)
    second = log.oldest_ns()
    assert second is not None and second > first
    log.close()


@settings(
    max_examples=int(os.environ.get("BUFFER_EXAMPLES", examples(60, 1500))),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(1, 120)),
            st.tuples(st.just("read"), st.integers(1, 200)),
            st.tuples(st.just("ack"), st.just(0)),
            st.tuples(st.just("release"), st.just(0)),
            st.tuples(st.just("reopen"), st.just(0)),
        ),
        max_size=60,
    )
)
def test_every_point_is_delivered_dropped_or_still_buffered(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]
) -> None:
    """Whatever happens, each appended point ends up exactly once as delivered, dropped or buffered."""
    folder = tmp_path_factory.mktemp("buffer")
    options: dict[str, object] = {"max_size": 12 * 1024, "segment_size": 2048}
    log = open_log(folder, **options)
    appended = 0
    dropped = 0
    delivered: list[int] = []
    inflight = None
    for op, amount in ops:
        if op == "append":
            dropped += log.append([lines(appended, amount)])
            appended += amount
        elif op == "read" and inflight is None:
            inflight = log.read(amount)
        elif op == "ack" and inflight is not None:
            log.ack(inflight)
            delivered += numbers(inflight.body)
            inflight = None
        elif op == "release" and inflight is not None:
            dropped += log.release(inflight)
            inflight = None
        elif op == "reopen":
            if inflight is not None:
                dropped += log.release(inflight)
                inflight = None
            log.close()
            log = open_log(folder, **options)
        assert log.disk_bytes <= 12 * 1024 + 120 * 40
    if inflight is not None:
        dropped += log.release(inflight)
    rest = drain_all(log)
    log.close()
    # Delivery is in order, without gaps except drops; a restart may resend (never skip) a batch.
    stream = delivered + rest
    unique = set(stream)
    assert len(unique) + dropped == appended
    assert unique <= set(range(appended))  # nothing delivered that was never appended
    # In order: each point is delivered for the first time after every point appended before it
    # that is delivered at all (a resent batch repeats points already delivered, it never skips ahead).
    first_deliveries = list(dict.fromkeys(stream))
    assert first_deliveries == sorted(first_deliveries), stream
    assert rest == sorted(rest)


def test_segment_names_sort_by_number() -> None:
    names = [segment_name(n) for n in (2, 10, 1, 100)]
    random.shuffle(names)
    assert sorted(names) == [segment_name(n) for n in (1, 2, 10, 100)]
