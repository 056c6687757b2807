"""The hash chain itself: how one audit entry is serialised and linked to the one before it.

Why a chain and not signed rows: a hospital has to show an inspector (NEN 7513, NIS2 Art. 23, GDPR Art. 33)
that nobody quietly edited or removed what the engine and the analysts did. If every entry's hash covers the
previous entry's hash, changing or removing any entry breaks every link after it, and anyone can recompute
the chain with nothing but SHA-256 and a JSON encoder; no key to manage, no service to trust.

The rule, exactly (docs/alerts.md "Audit chain" repeats it for outside verifiers)::

    body = canonical JSON of {"seq", "at", "kind", "actor", "subject", "detail"}
           (keys sorted at every level, no whitespace, UTF-8, non-ASCII characters unescaped)
    hash = hex(SHA-256(prev_hash as 64 ASCII hex digits + body))

The first entry (seq 1) links to ``GENESIS``, 64 zeros. ``seq`` is in the body, so moving an entry to another
position changes its hash; ``prev_hash`` is not in the body because it is already the first input.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

import orjson

#: What seq 1 links to: there is no entry before it.
GENESIS = "0" * 64
#: The fields a hash covers (besides prev_hash); anything else a store keeps next to them is not covered.
BODY_FIELDS = ("seq", "at", "kind", "actor", "subject", "detail")


@dataclass(frozen=True)
class AuditEntry:
    """One link of the chain. ``detail`` holds ids and hashes, never record contents (PHI)."""

    seq: int
    at: str
    kind: str
    actor: str
    subject: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> "AuditEntry":
        return cls(seq=int(row["seq"]), at=row["at"], kind=row["kind"], actor=row["actor"],
                   subject=row["subject"], detail=dict(row["detail"]), prev_hash=row["prev_hash"],
                   hash=row["hash"])


def canonical_body(row: Mapping[str, Any]) -> bytes:
    """The bytes the hash covers. orjson with sorted keys is compact and leaves non-ASCII unescaped, which is
    what ``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` gives for the
    strings, integers, lists and dicts an entry holds (floats are kept out of details for that reason)."""
    return orjson.dumps({name: row[name] for name in BODY_FIELDS}, option=orjson.OPT_SORT_KEYS)


def entry_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_body(row)).hexdigest()


def link(prev_seq: int, prev_hash: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
    """The stored row for ``body`` (at, kind, actor, subject, detail) appended after (prev_seq, prev_hash);
    ``prev_hash`` None means the chain is empty. Stores call this *inside* their tail-conditional append,
    so the seq and the link are always those of the tail the write is checked against."""
    row = {"seq": prev_seq + 1, "at": body["at"], "kind": body["kind"], "actor": body["actor"],
           "subject": body["subject"], "detail": dict(body["detail"])}
    # ``row`` holds exactly BODY_FIELDS here, so its sorted encoding is ``canonical_body(row)``: one dict
    # and one call fewer per entry (the ``@audit`` consumer links one per alert revision)
    prev = prev_hash or GENESIS
    digest = hashlib.sha256(prev.encode("ascii"))
    digest.update(orjson.dumps(row, option=orjson.OPT_SORT_KEYS))
    row["prev_hash"], row["hash"] = prev, digest.hexdigest()
    return row


@dataclass(frozen=True)
class VerifyResult:
    """``ok`` with ``checked`` entries, or the first broken link (``first_broken`` = its seq) and why."""

    ok: bool
    checked: int
    first_broken: int | None = None
    reason: str = ""
    #: entries up to this seq were removed by retention (0: none); the walk started after it
    pruned_through: int = 0


def verify_rows(rows: Iterable[Mapping[str, Any]], find_hash: Any = None,
                start: tuple[int, str] = (0, GENESIS)) -> VerifyResult:
    """Walk stored rows in seq order and stop at the first that does not hold.

    Checked per entry, in this order: its seq follows the previous one (else *gap*: entries removed); its
    ``prev_hash`` is the previous entry's hash (else *reordered* when it is some other entry's hash, found
    with ``find_hash(hash) -> seq | None``, or *broken link* when it is nobody's: an entry was removed and
    the rest renumbered, or one was rewritten with a fresh hash); its own hash recomputes (else *hash
    mismatch*: its contents were altered). What it cannot see: entries cut off the end of the chain, since
    nothing after them links to them (keep ``audit head`` off the machine for that).

    ``start`` is the (seq, hash) the first row links to: the genesis, or the last entry a retention prune
    removed, as the chain itself recorded it (``engine.audit.retention``)."""
    (prev_seq, prev_hash), checked = start, 0
    for row in rows:
        seq = int(row["seq"])
        if seq != prev_seq + 1:
            missing = f"seq {prev_seq + 1}" if seq == prev_seq + 2 else f"seq {prev_seq + 1}..{seq - 1}"
            return VerifyResult(False, checked, prev_seq + 1,
                                f"gap: {missing} missing (entry removed)" if seq > prev_seq
                                else f"reordered: seq {seq} after seq {prev_seq}")
        if row["prev_hash"] != prev_hash:
            other = find_hash(row["prev_hash"]) if find_hash is not None else None
            reason = (f"reordered: links to seq {other}, not seq {prev_seq}" if other is not None and other != seq
                      else f"broken link: prev_hash is not the hash of seq {prev_seq} "
                           "(an entry was removed, inserted or rewritten)")
            return VerifyResult(False, checked, seq, reason)
        if entry_hash(prev_hash, row) != row["hash"]:
            return VerifyResult(False, checked, seq, "hash mismatch: the entry's contents were altered")
        prev_seq, prev_hash, checked = seq, row["hash"], checked + 1
    return VerifyResult(True, checked)
