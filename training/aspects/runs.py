"""Stage outputs under reports/aspects/ (one JSON a stage), with the command and machine."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from training.machine import machine
from training.paths import REPORTS

OUT = REPORTS / "aspects"


def write(stage: str, result: dict, started: float) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{stage}.json"
    record = {"command": "python -m training.aspects " + " ".join(sys.argv[1:]),
              "machine": machine(), "wall_seconds": round(time.time() - started, 1), **result}
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return path


def read(stage: str) -> dict:
    return json.loads((OUT / f"{stage}.json").read_text())
