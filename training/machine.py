"""What a training or evaluation run ran on, and what a served head costs on it, for reports."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np


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
            "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform()}


def token_head_seconds(sess, batch: int, tokens: int, warmup: int, reps: int) -> np.ndarray:
    """Seconds per call of an ONNX head over encoder token states (random [batch, tokens, 384]
    states, full mask), after `warmup` untimed calls."""
    rng = np.random.default_rng(0)
    feed = {"tokens": rng.standard_normal((batch, tokens, 384)).astype(np.float32),
            "attention_mask": np.ones((batch, tokens), dtype=np.int64)}
    for _ in range(warmup):
        sess.run(None, feed)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    return np.array(times)
