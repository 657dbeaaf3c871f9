import json

from jsonschema import Draft202012Validator

from devstack.replay import conversation_messages, pick_dialogues
from worker.schemas import HERE, NAMES, validator


def test_every_schema_is_valid_and_loaded():
    files = sorted(p.name for p in HERE.glob("*.schema.json"))
    assert files == sorted(f"{n}.schema.json" for n in NAMES)
    for name in NAMES:
        Draft202012Validator.check_schema(json.loads((HERE / f"{name}.schema.json").read_text()))


def test_replayed_messages_validate_against_the_input_schemas():
    for dialogue in pick_dialogues(6):
        messages = conversation_messages(dialogue, prefix="t-")
        *turns, end = messages
        for m in turns:
            validator("turn").validate(json.loads(m.value))
        validator("conversation_end").validate(json.loads(end.value))
        assert all(m.key == f"t-{dialogue.id}".encode() for m in messages)
