"""JSON Schemas of every event type, loaded once."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator

HERE = Path(__file__).parent
NAMES = ("turn", "conversation_end", "enriched_turn", "alert", "dead_letter")


@cache
def validator(name: str) -> Draft202012Validator:
    schema = json.loads((HERE / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
