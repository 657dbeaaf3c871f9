"""Stage outputs under reports/aspects/ (one JSON a stage), with the command and machine."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

from training.paths import REPORTS

OUT = REPORTS / "aspects"


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores_visible": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__}


def write(stage: str, result: dict, started: float) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{stage}.json"
    record = {"command": "python -m training.aspects " + " ".join(sys.argv[1:]),
              "machine": machine(), "wall_seconds": round(time.time() - started, 1), **result}
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return path


def read(stage: str) -> dict:
    return json.loads((OUT / f"{stage}.json").read_text())
