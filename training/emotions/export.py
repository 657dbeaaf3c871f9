"""Export the served emotion head (training/checkpoints/emotions.pt) for Triton.

    out_dir/emotions/1/model.onnx   tokens [B, L, 384] fp32 + attention_mask [B, L] int64
                                    -> emotion_probs [B, 11] (sigmoid, E-c label order)
    out_dir/emotions/config.pbtxt   onnxruntime backend; labels and tuned thresholds travel as
                                    parameters "labels" and "thresholds" (comma-separated)

`tokens` is the served encoder's token-level output (training/model.py ChatModel.tokens), so
the head shares the encoder pass with the sentiment model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx
import torch

from training.emotions.data import LABELS
from training.emotions.model import Datn, DatnConfig, Probabilities
from training.paths import ROOT
from training.pbtxt import model_config

CHECKPOINT = ROOT / "training/checkpoints/emotions.pt"
NAME = "emotions"
WIDTH = 384


def save_checkpoint(model: Datn, thresholds: list[float], about: dict,
                    path: Path = CHECKPOINT) -> None:
    """fp16 weights, the config, label order and tuned thresholds."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save({"config": dict(model.cfg.__dict__), "state": state, "labels": list(LABELS),
                "thresholds": [float(t) for t in thresholds], "about": about}, path)


def load_checkpoint(path: Path = CHECKPOINT) -> tuple[Datn, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = Datn(DatnConfig(**ckpt.pop("config")))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in ckpt.pop("state").items()})
    return model.eval(), ckpt


def config_pbtxt(labels: list[str], thresholds: list[float], about: dict) -> str:
    return model_config(NAME, [
        "Served emotions (training/emotions/model.py, DATN-1 head over the served encoder's",
        "token states): 11 SemEval-2018 E-c labels, sigmoid probabilities; a label is on when",
        "its probability >= its threshold (tuned on dev, parameter thresholds, label order).",
        "Exported by training/emotions/export.py from training/checkpoints/emotions.pt."], 128,
        {"tokens": ("TYPE_FP32", [-1, WIDTH]), "attention_mask": ("TYPE_INT64", [-1])},
        {"emotion_probs": ("TYPE_FP32", [len(labels)])},
        {"labels": ",".join(labels), "thresholds": ",".join(f"{t:.2f}" for t in thresholds),
         "about": json.dumps(about)})


def export(out_dir: Path, checkpoint: Path = CHECKPOINT, opset: int = 17) -> Path:
    """Write out_dir/emotions/{1/model.onnx, config.pbtxt}; returns the ONNX path."""
    model, meta = load_checkpoint(checkpoint)
    onnx_path = Path(out_dir) / NAME / "1" / "model.onnx"
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    tokens = torch.zeros(2, 8, WIDTH)
    mask = torch.ones(2, 8, dtype=torch.int64)
    mask[1, 5:] = 0
    with torch.no_grad():
        torch.onnx.export(Probabilities(model), (tokens, mask), str(onnx_path),
                          input_names=["tokens", "attention_mask"],
                          output_names=["emotion_probs"],
                          dynamic_axes={"tokens": {0: "batch", 1: "length"},
                                        "attention_mask": {0: "batch", 1: "length"},
                                        "emotion_probs": {0: "batch"}},
                          opset_version=opset, dynamo=False)
    graph = onnx.load(str(onnx_path))
    graph.graph.output[0].type.tensor_type.shape.dim[1].dim_value = len(meta["labels"])
    onnx.checker.check_model(graph)
    onnx.save(graph, str(onnx_path))
    (onnx_path.parent.parent / "config.pbtxt").write_text(
        config_pbtxt(meta["labels"], meta["thresholds"], meta.get("about", {})))
    return onnx_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir", type=Path, help="a Triton model repository, e.g. model_repository")
    print(export(ap.parse_args().out_dir))


if __name__ == "__main__":
    main()
