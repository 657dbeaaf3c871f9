"""Input bytes -> Turn | ConversationEnd | Rejection (pure; never raises on bad input)."""

from __future__ import annotations

import orjson
from jsonschema import ValidationError

from worker.records import ConversationEnd, Rejection, Turn
from worker.schemas import validator

Parsed = Turn | ConversationEnd | Rejection


def _reason(err: ValidationError) -> str:
    field = err.path[0] if err.path else None
    if err.validator == "required":
        return "missing_field"
    if err.validator == "additionalProperties":
        return "unexpected_field"
    if err.validator == "type":
        return "wrong_type"
    if field == "role":
        return "unknown_role"
    if field == "text" and err.validator == "maxLength":
        return "text_too_long"
    return "invalid_value"


def parse(raw: bytes | None, key: bytes | None, max_bytes: int) -> Parsed:
    """Decode and validate one message of the turns topic against its JSON Schema."""
    if raw is None or len(raw) == 0:
        return Rejection("invalid_json", "empty message")
    if len(raw) > max_bytes:
        return Rejection("too_large", f"{len(raw)} bytes > {max_bytes}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection("invalid_utf8", str(exc)[:200])
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection("invalid_json", str(exc)[:200])
    if not isinstance(doc, dict):
        return Rejection("not_an_object", type(doc).__name__)
    cid = doc.get("conversation_id") if isinstance(doc.get("conversation_id"), str) else None
    kind = doc.get("type", "turn")
    if kind not in ("turn", "conversation_end"):
        return Rejection("unknown_type", repr(kind)[:100], cid)
    errors = sorted(validator(kind).iter_errors(doc), key=lambda e: (len(e.path), e.message))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.path) or "(root)"
        return Rejection(_reason(err), f"{where}: {err.message[:200]}", cid)
    if key is not None and key != doc["conversation_id"].encode("utf-8"):
        return Rejection("key_mismatch", "message key differs from conversation_id", cid)
    if kind == "conversation_end":
        return ConversationEnd(doc["conversation_id"], doc["ts"], doc.get("reason"),
                               doc.get("tenant"))
    return Turn(
        conversation_id=doc["conversation_id"],
        turn_id=doc["turn_id"],
        seq=doc["seq"],
        role=doc["role"],
        text=doc["text"],
        ts=doc["ts"],
        channel=doc.get("channel"),
        tenant=doc.get("tenant"),
        metadata=doc.get("metadata"),
    )
