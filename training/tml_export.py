"""Export a trained TML checkpoint as the served step model: model_repository/tml.

    python -m training.tml_export training/checkpoints/tml.pt

One ONNX graph per turn with every carried tensor in and out (state X in, X_out out), the class
probabilities and the ids of the top topic words; the vocabulary travels in config.pbtxt
(parameter "vocabulary", a JSON list) so that the worker's bag of words always matches the model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx
import torch

from training.paths import MODEL_REPOSITORY
from training.tml import TML, TMLStep, load

PER_TURN = ("embedding", "is_customer", "turn_bow")


def io_shapes(model: TML) -> tuple[dict, dict]:
    """name -> (Triton data type, dims without the batch axis) of inputs and outputs."""
    c = model.cfg
    state = {"h": ("TYPE_FP32", [c.hidden]), "c": ("TYPE_FP32", [c.hidden]),
             "memory": ("TYPE_FP32", [c.window, c.hidden]), "memory_len": ("TYPE_INT64", [1]),
             "bow_overall": ("TYPE_FP32", [c.vocab]), "bow_customer": ("TYPE_FP32", [c.vocab]),
             "bow_agent": ("TYPE_FP32", [c.vocab])}
    inputs = {"embedding": ("TYPE_FP32", [c.embed_dim]), "is_customer": ("TYPE_FP32", [1]),
              "turn_bow": ("TYPE_FP32", [c.vocab]), **state}
    outputs = {"probs": ("TYPE_FP32", [c.classes]), "topic_words": ("TYPE_INT64", [c.top_words]),
               **{f"{k}_out": v for k, v in state.items()}}
    return inputs, outputs


def config_pbtxt(model: TML, name: str, vocabulary: list[str], about: dict) -> str:
    inputs, outputs = io_shapes(model)

    def block(kind: str, spec: dict) -> str:
        rows = [f'  {{ name: "{n}" data_type: {t} dims: [ {", ".join(map(str, d))} ] }}'
                for n, (t, d) in spec.items()]
        return f"{kind} [\n" + ",\n".join(rows) + "\n]"

    vocab = json.dumps(json.dumps(vocabulary))  # a JSON list inside a protobuf string
    return "\n".join([
        "# TML step (training/tml.py): one turn per row; LSTM h/c, the attention memory and its",
        "# length, and the three bag-of-words counts go in and come out (X -> X_out), so the",
        f"# model is stateless. Exported by `python -m training.tml_export`. {json.dumps(about)}",
        f'name: "{name}"', 'backend: "onnxruntime"', "max_batch_size: 256",
        block("input", inputs), block("output", outputs),
        "dynamic_batching {\n  max_queue_delay_microseconds: 500\n}",
        f'parameters {{\n  key: "vocabulary"\n  value: {{ string_value: {vocab} }}\n}}', ""])


def export_step(model: TML, out: Path, opset: int = 17) -> None:
    step = TMLStep(model.eval())
    inputs, outputs = io_shapes(model)
    state = step.initial_state(2)
    args = (torch.zeros(2, model.cfg.embed_dim), torch.ones(2, 1),
            torch.zeros(2, model.cfg.vocab), *state.values())
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(step, args, str(out), input_names=list(inputs),
                          output_names=list(outputs),
                          dynamic_axes={n: {0: "batch"} for n in [*inputs, *outputs]},
                          opset_version=opset, dynamo=False)
    graph = onnx.load(str(out))
    onnx.checker.check_model(graph)


def export(checkpoint: Path, repo: Path = MODEL_REPOSITORY, name: str = "tml") -> Path:
    model, extra = load(checkpoint)
    out = repo / name / "1" / "model.onnx"
    export_step(model, out)
    about = {k: extra[k] for k in ("task", "seed", "valid_macro_f1") if k in extra}
    (repo / name / "config.pbtxt").write_text(
        config_pbtxt(model, name, extra["vocabulary"], about))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--repo", type=Path, default=MODEL_REPOSITORY)
    p.add_argument("--name", default="tml")
    args = p.parse_args()
    print(f"exported {export(args.checkpoint, args.repo, args.name)}")


if __name__ == "__main__":
    main()
