"""Export the served aspect head for Triton (the worker's model repository layout):

    out_dir/aspects/1/model.onnx
    out_dir/aspects/config.pbtxt

Inputs: `tokens` [B, L, 384] fp32 (the served encoder's token states) and `attention_mask`
[B, L] int64; output `aspect_tags` [B, L, 7] fp32, per-wordpiece probabilities over TAGS in
that order. config.pbtxt parameters: "tags" (JSON list, the order) and "min_confidence" (the
serving floor for decode.spans). Usage: python -m training.aspects.export OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import onnx
import torch

from training.aspects import TAGS
from training.aspects.head import Served, load
from training.paths import ROOT
from training.pbtxt import model_config

CHECKPOINT = ROOT / "training/checkpoints/aspects.pt"
NAME = "aspects"
# Serving floor on a term's confidence (decode.spans), chosen on the 100 judged USS customer
# turns (reports/aspects/eval.md): at 0.8, 6 of 10 extractions are accepted (aspect and
# polarity), against 13 of 40 with no floor; on the ABSA test sets precision rises to ~60-79 %.
MIN_CONFIDENCE = 0.8
INPUTS = {"tokens": ("TYPE_FP32", [-1, 384]), "attention_mask": ("TYPE_INT64", [-1])}
OUTPUTS = {"aspect_tags": ("TYPE_FP32", [-1, len(TAGS)])}


def config_pbtxt(about: dict, min_confidence: float = MIN_CONFIDENCE) -> str:
    return model_config(NAME, [
        "Aspect terms (training/aspects): a head over the served encoder's token states.",
        "aspect_tags: per-wordpiece probabilities over `tags` (in that order); the worker turns",
        "them into spans with worker.explain.AspectTags.spans (min_confidence: the floor).",
        "Exported by `python -m training.aspects.export OUT_DIR`."], 128, INPUTS, OUTPUTS,
        {"tags": json.dumps(list(TAGS)), "min_confidence": str(min_confidence),
         "about": json.dumps(about)})


def export(out_dir: Path, checkpoint: Path = CHECKPOINT, opset: int = 17) -> Path:
    """Write out_dir/aspects/1/model.onnx and out_dir/aspects/config.pbtxt; the ONNX path."""
    head, cfg, extra = load(checkpoint)
    served = Served(head).eval()
    model_dir = Path(out_dir) / NAME
    onnx_path = model_dir / "1" / "model.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tokens = torch.randn(2, 8, cfg.dim)
    mask = torch.ones(2, 8, dtype=torch.int64)
    with torch.no_grad():
        torch.onnx.export(served, (tokens, mask), str(onnx_path),
                          input_names=list(INPUTS), output_names=list(OUTPUTS),
                          dynamic_axes={"tokens": {0: "batch", 1: "wordpieces"},
                                        "attention_mask": {0: "batch", 1: "wordpieces"},
                                        "aspect_tags": {0: "batch", 1: "wordpieces"}},
                          opset_version=opset, dynamo=False)
    graph = onnx.load(str(onnx_path))
    onnx.checker.check_model(graph)
    about = {"kind": cfg.kind, **{k: v for k, v in extra.items() if k in ("seed", "dev_mean")}}
    (model_dir / "config.pbtxt").write_text(config_pbtxt(about))
    return onnx_path


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(export(Path(sys.argv[1])))
