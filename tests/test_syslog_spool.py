"""The durable spool: records round-trip, segments rotate, torn and corrupt records are skipped."""

from __future__ import annotations

from pathlib import Path

from connectors.syslog.spool import CorruptRecord, Spool, SpoolCursor, SpoolItem, SpoolRecord


def _messages(result) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [i.record.data for i in result.items if isinstance(i, SpoolItem)]


def test_round_trip_and_cursor_resume(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open_writer()
    spool.append([SpoolRecord(b"m%d" % i, peer="tcp:1.2.3.4:5") for i in range(10)])
    first = spool.read(None, 4)
    assert _messages(first) == [b"m0", b"m1", b"m2", b"m3"] and not first.exhausted
    rest = spool.read(first.cursor, 100)
    assert _messages(rest) == [b"m%d" % i for i in range(4, 10)] and rest.exhausted
    assert spool.read(rest.cursor, 100).items == []
    assert rest.items[0].record.peer == "tcp:1.2.3.4:5"


def test_rotation_and_acknowledge_deletes_only_consumed_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=200)
    spool.open_writer()
    for i in range(20):
        spool.append([SpoolRecord(b"x" * 40 + b"%d" % i)])
    assert len(spool.segments()) > 3
    half = spool.read(None, 10)
    before = spool.segments()
    spool.acknowledge(half.cursor)
    after = spool.segments()
    assert after[0] == half.cursor.segment and set(after) < set(before)
    rest = spool.read(half.cursor, 100)
    assert len(_messages(half)) + len(_messages(rest)) == 20
    spool.acknowledge(rest.cursor)
    assert spool.segments() == [spool._active]  # the active segment is never deleted


def test_torn_tail_waits_in_newest_segment_and_is_skipped_once_final(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open_writer()
    spool.append([SpoolRecord(b"a"), SpoolRecord(b"b")])
    spool.close()
    segment = spool.segments()[-1]
    torn = SpoolRecord(b"torn" * 10).encode()
    with open(tmp_path / f"{segment:020d}.spool", "ab") as handle:
        handle.write(torn[: len(torn) // 2])
    reader = Spool(tmp_path)
    result = reader.read(None, 100)
    assert _messages(result) == [b"a", b"b"] and result.exhausted
    assert not any(isinstance(i, CorruptRecord) for i in result.items)
    # A new writer (restart) makes the old segment final: the torn record is skipped, once.
    reader.open_writer()
    reader.append([SpoolRecord(b"c")])
    later = reader.read(result.cursor, 100)
    corrupt = [i for i in later.items if isinstance(i, CorruptRecord)]
    assert _messages(later) == [b"c"] and len(corrupt) == 1 and "torn" in corrupt[0].reason


def test_crc_mismatch_is_skipped_and_reader_resyncs(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open_writer()
    spool.append([SpoolRecord(b"good1"), SpoolRecord(b"bad!!"), SpoolRecord(b"good2")])
    spool.close()
    path = tmp_path / f"{spool.segments()[-1]:020d}.spool"
    data = bytearray(path.read_bytes())
    data[data.index(b"bad!!")] ^= 0xFF
    path.write_bytes(bytes(data))
    result = Spool(tmp_path).read(None, 100)
    assert _messages(result) == [b"good1", b"good2"]
    assert [type(i).__name__ for i in result.items] == ["SpoolItem", "CorruptRecord", "SpoolItem"]


def test_cursor_into_deleted_segment_moves_to_next(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open_writer()
    spool.append([SpoolRecord(b"only")])
    result = spool.read(SpoolCursor(0, 12345), 10)
    assert _messages(result) == [b"only"]
