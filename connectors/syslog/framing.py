"""RFC 6587 framing for syslog over a byte stream (TCP, TLS).

Two framings exist in the wild and devices do not announce which one they use, so the decoder detects it
*per frame*, like rsyslog does:

* **octet counting** (RFC 6587 3.4.1, required by RFC 5425 for TLS): ``MSG-LEN SP SYSLOG-MSG`` where
  ``MSG-LEN`` is ``NONZERO-DIGIT *DIGIT``. A frame that starts with a digit is octet-counted.
* **non-transparent framing** (RFC 6587 3.4.2): the message runs up to an LF (a CR before it is dropped).
  Anything else is non-transparent; every RFC 5424/3164 message starts with ``<PRI>``, so this is unambiguous
  for conforming senders.

The decoder is a pure state machine over bytes: it never blocks and never touches a socket, which is what
lets the property tests prove that the frames it produces do not depend on how the stream was split into
TCP segments. It is bounded in memory by ``max_message_bytes`` (plus one chunk).

Errors are values, not exceptions: an oversized frame is read and discarded (exactly the declared octet
count, or up to the next LF) and reported as a non-fatal :class:`FrameError`; a malformed octet count
makes the rest of the stream meaningless, so it is reported as *fatal* and the caller closes the connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Longest accepted MSG-LEN in digits. 9 digits (< 1 GB) is far above any sane max_message_bytes; more
#: digits than that are not a length, they are garbage (or an attack on the skip logic).
MAX_LENGTH_DIGITS = 9
#: Longest raw excerpt kept for a dead letter.
MAX_ERROR_RAW = 65536

_OCTET_HEADER = re.compile(rb"[1-9][0-9]{0,%d} " % (MAX_LENGTH_DIGITS - 1))
_DIGITS = frozenset(b"0123456789")

Frame = bytes


@dataclass(frozen=True)
class FrameError:
    """A framing problem. ``fatal`` means the stream cannot be resynchronised: close the connection."""

    reason: str
    raw: bytes
    fatal: bool = False


class FrameDecoder:
    """Incremental decoder: ``feed()`` chunks as they arrive, ``close()`` at end of stream.

    Both return a list of items in stream order: ``bytes`` (one complete syslog message, without framing)
    or :class:`FrameError`. After a fatal error the decoder ignores all further input.
    """

    __slots__ = ("max_message_bytes", "_buf", "_skip_remaining", "_skip_declared", "_lf_skip", "_prefix",
                 "_keep", "dead")

    def __init__(self, max_message_bytes: int = 65536):
        if max_message_bytes < 1:
            raise ValueError("max_message_bytes must be positive")
        self.max_message_bytes = max_message_bytes
        self._keep = min(max_message_bytes, MAX_ERROR_RAW)
        self._buf = bytearray()
        self._skip_remaining = 0  # octets still to discard of an oversized octet-counted frame
        self._skip_declared = 0
        self._lf_skip = False  # discarding an oversized non-transparent frame up to its LF
        self._prefix = bytearray()  # first bytes of the frame being discarded, for the dead letter
        self.dead = False

    @property
    def pending(self) -> bool:
        """True while a frame has started but not ended (buffered bytes, or an oversized frame being skipped).

        The listener's per-frame deadline runs while this is true: a sender that trickles a frame byte by byte
        is never idle, so only a deadline on the frame itself can drop it.
        """
        return not self.dead and bool(self._buf or self._skip_remaining or self._lf_skip)

    # ------------------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[Frame | FrameError]:
        if self.dead:
            return []
        self._buf += data
        out: list[Frame | FrameError] = []
        buf = self._buf
        maxlen = self.max_message_bytes
        while True:
            if self._skip_remaining:
                take = min(len(buf), self._skip_remaining)
                self._keep_prefix(buf, take)
                del buf[:take]
                self._skip_remaining -= take
                if self._skip_remaining:
                    break
                out.append(self._oversized(f"octet-counted frame of {self._skip_declared} octets exceeds "
                                           f"max_message_bytes={maxlen}; discarded"))
                continue
            if self._lf_skip:
                idx = buf.find(b"\n")
                if idx == -1:
                    self._keep_prefix(buf, len(buf))
                    buf.clear()
                    break
                self._keep_prefix(buf, idx)
                del buf[: idx + 1]
                self._lf_skip = False
                out.append(self._oversized(f"LF-terminated frame exceeds max_message_bytes={maxlen}; "
                                           "discarded up to the next LF"))
                continue
            if not buf:
                break
            if buf[0] in _DIGITS:
                match = _OCTET_HEADER.match(buf)
                if match is None:
                    error = self._bad_count(buf)
                    if error is None:
                        break  # header incomplete: wait for more bytes
                    out.append(error)
                    return out
                start = match.end()
                length = int(buf[: start - 1])
                if length > maxlen:
                    del buf[:start]
                    self._skip_remaining = self._skip_declared = length
                    self._prefix = bytearray()
                    continue
                end = start + length
                if len(buf) < end:
                    break
                out.append(bytes(buf[start:end]))
                del buf[:end]
                continue
            idx = buf.find(b"\n")
            if idx == -1:
                # A CR may still precede the LF, hence maxlen + 1 before we give up on this frame.
                if len(buf) > maxlen + 1:
                    self._lf_skip = True
                    self._prefix = bytearray()
                    self._keep_prefix(buf, len(buf))
                    buf.clear()
                break
            end = idx - 1 if idx and buf[idx - 1] == 0x0D else idx
            if end > maxlen:
                self._prefix = bytearray()
                self._keep_prefix(buf, end)
                del buf[: idx + 1]
                out.append(self._oversized(f"LF-terminated frame exceeds max_message_bytes={maxlen}; "
                                           "discarded up to the next LF"))
                continue
            if end:
                out.append(bytes(buf[:end]))
            del buf[: idx + 1]
        return out

    def close(self) -> list[Frame | FrameError]:
        """End of stream: flush a final unterminated frame, report a frame cut short."""
        if self.dead:
            return []
        out: list[Frame | FrameError] = []
        buf = self._buf
        if self._skip_remaining:
            out.append(self._oversized(f"connection closed inside an oversized frame of {self._skip_declared} "
                                       "octets"))
            self._skip_remaining = 0
        elif self._lf_skip:
            self._lf_skip = False
            out.append(self._oversized(f"unterminated frame exceeds max_message_bytes={self.max_message_bytes}"))
        elif buf:
            if buf[0] in _DIGITS:
                out.append(FrameError("connection closed inside an octet-counted frame",
                                      bytes(buf[: self._keep])))
            else:
                end = len(buf) - 1 if buf[-1] == 0x0D else len(buf)
                if end > self.max_message_bytes:
                    out.append(FrameError(f"unterminated frame exceeds max_message_bytes={self.max_message_bytes}",
                                          bytes(buf[: self._keep])))
                elif end:
                    out.append(bytes(buf[:end]))
        buf.clear()
        self.dead = True
        return out

    # ------------------------------------------------------------------------------------------------
    def _keep_prefix(self, buf: bytearray, upto: int) -> None:
        room = self._keep - len(self._prefix)
        if room > 0:
            self._prefix += buf[: min(upto, room)]

    def _oversized(self, reason: str) -> FrameError:
        raw = bytes(self._prefix)
        self._prefix = bytearray()
        return FrameError(reason, raw)

    def _bad_count(self, buf: bytearray) -> FrameError | None:
        """Find the first byte that makes the MSG-LEN invalid; None when the header is merely incomplete.

        The error names exactly the bytes up to the offending one, so the result does not depend on how
        much of the stream happened to be buffered (split-point independence).
        """
        for i in range(min(len(buf), MAX_LENGTH_DIGITS + 1)):
            c = buf[i]
            if c in _DIGITS:
                if i == 0 and c == 0x30:
                    return self._fatal("octet count starts with 0", buf, i)
                if i == MAX_LENGTH_DIGITS:
                    return self._fatal(f"octet count longer than {MAX_LENGTH_DIGITS} digits", buf, i)
                continue
            if c == 0x20:
                return None  # unreachable: the regex would have matched
            return self._fatal("octet count not followed by a space", buf, i)
        return None

    def _fatal(self, reason: str, buf: bytearray, pos: int) -> FrameError:
        raw = bytes(buf[: pos + 1])
        buf.clear()
        self.dead = True
        return FrameError(f"malformed octet-counting frame: {reason}", raw, fatal=True)


#: Sender-side framings: ``octet-counting`` (RFC 6587 3.4.1; RFC 5425 requires it over TLS) and ``lf``.
FRAMINGS = ("octet-counting", "lf")


def encode_frame(message: bytes, framing: str = "octet-counting") -> bytes:
    """The sending side of :class:`FrameDecoder`: one message framed for a byte stream.

    Kept beside the decoder so the property tests can prove that what we send is what our receiver reads.
    LF framing cannot carry a message that contains an LF (or starts with a digit, which a detecting
    receiver takes for an octet count): that is a ``ValueError``, never a silently split message.
    """
    if framing == "octet-counting":
        return b"%d %s" % (len(message), message)
    if framing == "lf":
        if b"\n" in message or message[:1].isdigit():
            raise ValueError("message cannot be LF-framed (contains an LF or starts with a digit)")
        return message + b"\n"
    raise ValueError(f"framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
