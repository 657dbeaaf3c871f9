"""Export the served model into the Triton model repository.

    python -m training.export                 # calibrate on validation, export both models
    python -m training.export --encoder-only  # what `make setup` runs (the encoder is large)

encoder  token ids -> the fine-tuned utterance vector (training/model.py, Encoder);
         model_repository/encoder/1/model.onnx, not committed (87 MB; rebuilt from the base
         MiniLM and the fine-tuned layers in training/checkpoints/served.pt)
step     one turn per row: GRU state h and the conversation's bag of words go in and come out
         (X -> X_out); calibrated probabilities of the three heads and the ids of the topic
         words (training/topics.py); the vocabulary travels in config.pbtxt
Calibration: a temperature per head, fitted on validation (USS valid for satisfaction and
levels; MELD dev + SemEval dev + GoEmotions dev + service requests valid for sentiment);
expected calibration error before and after goes to reports/served/calibration.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from training import topics as topic_model
from training.data import (
    USS_CORPORA,
    Dialogue,
    head_label,
    load_goemotions,
    load_meld,
    load_semeval,
    load_service,
    load_uss,
    uss_split,
)
from training.encoder import embed_texts
from training.model import HEADS, ChatModel, Encoder, Step, load
from training.paths import MODEL_REPOSITORY, REPORTS, SERVED, minilm_dir
from training.pbtxt import model_config

STEP_NAME = "step"
TOP_WORDS = 5


class ServedStep(nn.Module):
    """The step model as served: heads, GRU state and the topic words of the prefix."""

    def __init__(self, step: Step, fold_in: nn.Module) -> None:
        super().__init__()
        self.step, self.fold_in = step, fold_in

    def forward(self, embedding, is_customer, turn_bow, h, bow):
        *probs, h1 = self.step(embedding, is_customer, h)
        heads = dict(zip(HEADS, probs, strict=True))
        levels, satisfaction, sentiment = heads["levels"], heads["satisfaction"], heads["sentiment"]
        bow1 = bow + turn_bow
        words, _ = self.fold_in(bow1)
        return levels, satisfaction, sentiment, words, h1, bow1


def io_spec(model: ChatModel, vocab: int) -> tuple[dict, dict]:
    c = model.cfg
    state = {"h": ("TYPE_FP32", [c.hidden]), "bow": ("TYPE_FP32", [vocab])}
    inputs = {"embedding": ("TYPE_FP32", [c.embed_dim]), "is_customer": ("TYPE_FP32", [1]),
              "turn_bow": ("TYPE_FP32", [vocab]), **state}
    outputs = {"probs": ("TYPE_FP32", [HEADS["levels"]]),
               "satisfaction": ("TYPE_FP32", [HEADS["satisfaction"]]),
               "sentiment": ("TYPE_FP32", [HEADS["sentiment"]]),
               "topic_words": ("TYPE_INT64", [TOP_WORDS]),
               **{f"{k}_out": v for k, v in state.items()}}
    return inputs, outputs


def config_pbtxt(inputs: dict, outputs: dict, vocabulary: list[str], about: dict) -> str:
    return model_config(STEP_NAME, [
        "Served step (training/model.py Step + training/topics.py): one turn per row; GRU state",
        "h and the conversation's bag of words go in and come out (X -> X_out), so the model is",
        "stateless. probs = USS 5 levels; satisfaction and sentiment: 3 classes each",
        "(negative, neutral, positive), temperature-calibrated on validation.",
        "Exported by `python -m training.export`; parameter about: checkpoint and temperatures."],
        256, inputs, outputs,
        {"vocabulary": json.dumps(vocabulary), "about": json.dumps(about)})


def export_encoder(model: ChatModel, out: Path, opset: int = 17) -> None:
    ids = torch.ones(2, 8, dtype=torch.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(Encoder(model), (ids, torch.ones_like(ids)), str(out),
                          input_names=["input_ids", "attention_mask"],
                          output_names=["embedding", "tokens"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"},
                                        "embedding": {0: "batch"},
                                        "tokens": {0: "batch", 1: "tokens"}},
                          opset_version=opset, dynamo=False)
    graph = onnx.load(str(out))  # declare the widths, as config.pbtxt does
    graph.graph.output[0].type.tensor_type.shape.dim[1].dim_value = model.cfg.embed_dim
    graph.graph.output[1].type.tensor_type.shape.dim[2].dim_value = model.cfg.embed_dim
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))


def export_step(model: ChatModel, temps: dict[str, float], topics: topic_model.Topics,
                out: Path, about: dict, opset: int = 17) -> None:
    served = ServedStep(Step(model, temps), topic_model.fold_in(topics, TOP_WORDS)).eval()
    vocab = len(topics.vocabulary)
    inputs, outputs = io_spec(model, vocab)
    args = (torch.zeros(2, model.cfg.embed_dim), torch.ones(2, 1), torch.zeros(2, vocab),
            torch.zeros(2, model.cfg.hidden), torch.zeros(2, vocab))
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(served, args, str(out), input_names=list(inputs),
                          output_names=list(outputs),
                          dynamic_axes={n: {0: "batch"} for n in [*inputs, *outputs]},
                          opset_version=opset, dynamo=False)
    onnx.checker.check_model(onnx.load(str(out)))
    (out.parent.parent / "config.pbtxt").write_text(
        config_pbtxt(inputs, outputs, topics.vocabulary, about))


@torch.no_grad()
def dialogue_logits(model: ChatModel, dialogues: list[Dialogue],
                    encoder_onnx: Path) -> list[dict[str, np.ndarray]]:
    """Per dialogue, the logits of each head per turn [T, C], from the served encoder's
    vectors (ONNX) through the GRU (torch): what the worker gets, before the temperatures."""
    texts = [u.text for d in dialogues for u in d.utterances]
    vectors = torch.from_numpy(embed_texts(encoder_onnx, texts))
    out, k = [], 0
    model.eval()
    for d in dialogues:
        n = len(d.utterances)
        cust = torch.tensor([[float(u.role == "customer")] for u in d.utterances])
        logits = model.dialogue(vectors[k: k + n][None], cust[None])
        out.append({h: v[0].numpy() for h, v in logits.items()})
        k += n
    return out


def labelled(dialogues: list[Dialogue], logits: list[dict], head: str):
    """(logits [N, C], labels [N]) of the turns that carry a label for `head`."""
    xs, ys = [], []
    for d, lg in zip(dialogues, logits, strict=True):
        for t, u in enumerate(d.utterances):
            if (y := head_label(u, head)) >= 0:
                xs.append(lg[head][t])
                ys.append(y)
    return np.array(xs, dtype=np.float64), np.array(ys)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ece(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top class (equal-width confidence bins)."""
    conf, pred = probs.max(-1), probs.argmax(-1)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            total += sel.mean() * abs((pred[sel] == y[sel]).mean() - conf[sel].mean())
    return float(total)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises validation NLL (LBFGS on log T)."""
    x, t = torch.tensor(logits), torch.tensor(y)
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(x / log_t.exp(), t)
        loss.backward()
        return loss

    opt.step(closure)
    return log_t.exp().item()


def validation_sets() -> dict[str, list[Dialogue]]:
    uss = []
    for corpus in USS_CORPORA:
        ds = load_uss(corpus)
        uss += [ds[i] for i in uss_split(corpus)["valid"]]
    return {"uss": uss, "sentiment": load_meld("dev") + load_semeval("dev")
            + load_goemotions("dev") + load_service("valid")}


def calibrate(model: ChatModel, encoder_onnx: Path) -> tuple[dict[str, float], dict]:
    sets = validation_sets()
    logits = {name: dialogue_logits(model, ds, encoder_onnx) for name, ds in sets.items()}
    temps, report = {}, {}
    for head in HEADS:
        name = "sentiment" if head == "sentiment" else "uss"
        x, y = labelled(sets[name], logits[name], head)
        temps[head] = fit_temperature(x, y)
        report[head] = {"n": len(y), "temperature": round(temps[head], 4),
                        "ece_before": round(ece(softmax(x), y), 4),
                        "ece_after": round(ece(softmax(x / temps[head]), y), 4)}
    return temps, report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=SERVED)
    p.add_argument("--repo", type=Path, default=MODEL_REPOSITORY)
    p.add_argument("--encoder-only", action="store_true")
    p.add_argument("--force", action="store_true", help="export the encoder even if it exists")
    args = p.parse_args()
    model, extra = load(args.checkpoint, minilm_dir())
    encoder = args.repo / "encoder" / "1" / "model.onnx"
    if args.force or not encoder.exists():
        export_encoder(model, encoder)
        print(f"exported {encoder}")
    if args.encoder_only:
        return
    temps, report = calibrate(model, encoder)
    topics = topic_model.load()
    about = {k: extra[k] for k in ("row", "seed", "valid_macro_f1", "device") if k in extra}
    about["temperatures"] = {k: round(v, 4) for k, v in temps.items()}
    export_step(model, temps, topics, args.repo / STEP_NAME / "1" / "model.onnx", about)
    out = REPORTS / "served" / "calibration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"command": "python -m training.export", **report}, indent=2)
                   + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
