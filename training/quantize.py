"""int8 encoder: dynamic quantisation of MiniLM's MatMuls (per channel), and what it costs.

    python -m training.quantize            # writes model_repository/encoder_int8/1/model.onnx
    python -m training.quantize --report   # ... and reports/encoder_int8.json (speed, accuracy)

Served beside the fp32 encoder; the worker uses it with CHAT_ENCODER_MODEL=encoder_int8.
Not the default: dynamic quantisation scales activations per batch tensor, so a turn's
embedding (and score) depends slightly on which turns share its batch (seen: score -0.0313
alone vs -0.0322 interleaved), which breaks replay determinism. Static (calibrated)
quantisation would not; it is the next step.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from onnxruntime.quantization import QuantType, quantize_dynamic

from training.data import USS_CORPORA, load_meld, load_uss, uss_split
from training.encoder import embed_texts
from training.features import dialogue_features
from training.model import load_checkpoint
from training.paths import MODEL_REPOSITORY, REPORTS, ROOT
from training.train import meld_metrics, metrics, predict

FP32 = MODEL_REPOSITORY / "encoder/1/model.onnx"
INT8 = MODEL_REPOSITORY / "encoder_int8/1/model.onnx"


def quantize(src: Path = FP32, dst: Path = INT8) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"])


def evaluate(encoder: Path) -> dict:
    """The committed head on this encoder's features: USS and MELD test."""
    head = load_checkpoint(ROOT / "training/checkpoints/turn_head.pt")
    out: dict = {}
    pred, g5, g3 = [], [], []
    for corpus in USS_CORPORA:
        dialogues = load_uss(corpus)
        test = [dialogues[i] for i in uss_split(corpus)["test"]]
        p, a, b = predict(head, test, dialogue_features(test, encoder))
        pred, g5, g3 = pred + p, g5 + a, g3 + b
    out["uss_test_macro_f1"] = metrics(pred, g5, g3)["macro_f1"]
    meld = load_meld("test")
    out["meld_test"] = meld_metrics(head, meld, dialogue_features(meld, encoder))
    return out


def speed(encoder: Path, texts: list[str]) -> float:
    embed_texts(encoder, texts[:32])  # warm-up
    t0 = time.perf_counter()
    embed_texts(encoder, texts)
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", action="store_true")
    p.add_argument("--force", action="store_true")
    args = p.parse_args()
    if args.force or not INT8.exists():
        quantize()
        print(f"wrote {INT8}")
    if not args.report:
        return
    texts = [u.text for d in load_meld("test")[:150] for u in d.utterances]
    fp32, int8 = evaluate(FP32), evaluate(INT8)
    a, b = embed_texts(FP32, texts), embed_texts(INT8, texts)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    report = {
        "command": "python -m training.quantize --report",
        "method": "onnxruntime quantize_dynamic, QInt8 weights, per channel, MatMul only",
        "onnx_mb": {"fp32": FP32.stat().st_size / 1e6, "int8": INT8.stat().st_size / 1e6},
        "turns_per_s_onnxruntime_2_threads": {"fp32": speed(FP32, texts),
                                              "int8": speed(INT8, texts)},
        "cosine_to_fp32": {"mean": float(cosine.mean()), "min": float(cosine.min())},
        "head_trained_on": "fp32 features (the committed turn_head)",
        "fp32": fp32, "int8": int8,
        "delta": {"uss_test_macro_f1": int8["uss_test_macro_f1"] - fp32["uss_test_macro_f1"],
                  "meld_test_macro_f1": int8["meld_test"]["macro_f1"]
                  - fp32["meld_test"]["macro_f1"]},
    }
    (REPORTS / "encoder_int8.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
