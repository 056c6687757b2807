"""RFC 6587 framing decoder: octet counting, non-transparent framing, errors, split-point independence."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.syslog.framing import FrameDecoder, FrameError


def decode(chunks: list[bytes], max_bytes: int = 65536) -> list[bytes | FrameError]:
    decoder = FrameDecoder(max_bytes)
    out: list[bytes | FrameError] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return out + decoder.close()


def octet(msg: bytes) -> bytes:
    return b"%d %s" % (len(msg), msg)


def test_octet_counting_several_frames_in_one_chunk() -> None:
    data = octet(b"<1>1 a") + octet(b"<2>1 b\nwith LF inside") + octet(b"<3>1 c")
    assert decode([data]) == [b"<1>1 a", b"<2>1 b\nwith LF inside", b"<3>1 c"]


def test_octet_counting_byte_by_byte() -> None:
    data = octet(b"<1>1 hello") + octet(b"<2>1 world")
    assert decode([data[i : i + 1] for i in range(len(data))]) == [b"<1>1 hello", b"<2>1 world"]


def test_non_transparent_lf_crlf_blank_lines_and_unterminated_tail() -> None:
    assert decode([b"<1>one\n<2>two\r\n\n\r\n<3>three"]) == [b"<1>one", b"<2>two", b"<3>three"]


def test_mixed_framings_on_one_stream() -> None:
    assert decode([octet(b"<1>a") + b"<2>b\n" + octet(b"<3>c")]) == [b"<1>a", b"<2>b", b"<3>c"]


def test_oversized_octet_frame_is_discarded_exactly() -> None:
    out = decode([octet(b"x" * 20), octet(b"<1>ok")], max_bytes=10)
    assert isinstance(out[0], FrameError) and not out[0].fatal and "20 octets" in out[0].reason
    assert out[0].raw == b"x" * 10
    assert out[1:] == [b"<1>ok"]


def test_oversized_lf_frame_is_discarded_to_next_lf() -> None:
    out = decode([b"<1>" + b"y" * 50, b"y" * 50 + b"\n<2>ok\n"], max_bytes=16)
    assert isinstance(out[0], FrameError) and not out[0].fatal
    assert out[1:] == [b"<2>ok"]


def test_frame_of_exactly_max_bytes_is_accepted_in_both_framings() -> None:
    msg = b"<1>" + b"z" * 13
    assert decode([octet(msg), msg + b"\r\n"], max_bytes=16) == [msg, msg]


def test_malformed_octet_counts_are_fatal() -> None:
    for bad in (b"05 hello", b"12x hello", b"1234567890 x"):
        out = decode([bad + b"<1>never\n"])
        assert len(out) == 1 and isinstance(out[0], FrameError) and out[0].fatal, bad


def test_truncated_octet_frame_at_close() -> None:
    out = decode([b"10 <1>abc"])
    assert len(out) == 1 and isinstance(out[0], FrameError) and "closed inside" in out[0].reason


# --- properties ------------------------------------------------------------------------------------------
def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


frame_part = st.one_of(
    st.binary(max_size=40).map(octet),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b).map(lambda b: b"<1>" + b + b"\n"),
    st.binary(max_size=30),  # garbage, possibly malformed counts
    st.sampled_from([b"0 ", b"99999 ", b"\r\n", b"\n", b"1", b" "]),
)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(frame_part, max_size=12), cuts=st.lists(st.integers(min_value=0), max_size=20),
       max_bytes=st.sampled_from([1, 8, 24, 65536]))
def test_output_does_not_depend_on_split_points(parts: list[bytes], cuts: list[int], max_bytes: int) -> None:
    data = b"".join(parts)
    whole = decode([data], max_bytes)
    assert decode(_split(data, cuts), max_bytes) == whole
    assert decode([data[i : i + 1] for i in range(len(data))], max_bytes) == whole


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(st.binary(min_size=1, max_size=200), max_size=10),
       cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_octet_counted_messages_round_trip(messages: list[bytes], cuts: list[int]) -> None:
    data = b"".join(octet(m) for m in messages)
    assert decode(_split(data, cuts)) == messages


@settings(max_examples=200, deadline=None)
@given(messages=st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=6),
       max_bytes=st.sampled_from([8, 65536]), data=st.data())
def test_pending_is_true_exactly_while_a_frame_is_unfinished(messages: list[bytes], max_bytes: int,
                                                             data: st.DataObject) -> None:
    """``pending`` drives the listener's per-frame deadline: true inside any frame (also one being
    discarded as oversized), false at every frame boundary, whatever the split points."""
    frames = [octet(m) for m in messages]
    stream = b"".join(frames)
    boundaries = {sum(len(f) for f in frames[:i]) for i in range(len(frames) + 1)}
    cut = data.draw(st.integers(min_value=0, max_value=len(stream)))
    decoder = FrameDecoder(max_bytes)
    decoder.feed(stream[:cut])
    assert decoder.pending == (cut not in boundaries)
    decoder.feed(stream[cut:])
    assert not decoder.pending


def test_pending_for_non_transparent_frames_and_after_close() -> None:
    decoder = FrameDecoder(8)
    assert not decoder.pending
    decoder.feed(b"<1>1 a")
    assert decoder.pending
    decoder.feed(b"\n<1>1 " + b"x" * 20)  # oversized: being discarded up to the next LF, still a frame
    assert decoder.pending
    decoder.feed(b"\n")
    assert not decoder.pending
    decoder.feed(b"<1>")
    decoder.close()
    assert not decoder.pending
