"""Train the causal recurrent head on USS MWOZ+SGD, evaluate on the published test split,
export it to the model repository and write the report.

    python -m training.train                      # full run (reports/first_model.*)
    python -m training.train --dialogues 40 --epochs 2 --out-dir /tmp/x   # a tiny slice
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from training.data import (
    LEVELS,
    USS_CORPORA,
    Dialogue,
    Utterance,
    label_3,
    label_5,
    load_meld,
    load_uss,
    uss_split,
)
from training.export import export_head
from training.features import dialogue_features
from training.model import HeadConfig, TurnHead, save_checkpoint
from training.paths import MODEL_REPOSITORY, REPORTS, ROOT

IGNORE = -100
MELD_LEVEL = {"negative": 1, "neutral": 2, "positive": 3}  # MELD 3-class onto the 5 levels


def turn_label(u: Utterance) -> int:
    """Training target of a turn: USS customer turns by majority vote, MELD turns by their
    sentiment, anything else unlabelled."""
    if u.scores:
        return label_5(u.scores)
    if u.sentiment:
        return MELD_LEVEL[u.sentiment]
    return IGNORE


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_batch(dialogues: list[Dialogue], feats: list[np.ndarray]):
    """Pad a list of dialogues: emb [B,T,E], is_customer [B,T,1], labels [B,T] (5-level)."""
    t_max = max(len(d.utterances) for d in dialogues)
    b, e = len(dialogues), feats[0].shape[1]
    emb = torch.zeros(b, t_max, e)
    cust = torch.zeros(b, t_max, 1)
    labels = torch.full((b, t_max), IGNORE, dtype=torch.long)
    for i, (d, f) in enumerate(zip(dialogues, feats, strict=True)):
        emb[i, : len(f)] = torch.from_numpy(f)
        for t, u in enumerate(d.utterances):
            cust[i, t, 0] = 1.0 if u.role == "customer" else 0.0
            labels[i, t] = turn_label(u)
    return emb, cust, labels


def turn_outputs(head: TurnHead, dialogues: list[Dialogue], feats: list[np.ndarray],
                 chunk: int = 64):
    """(utterance, 5-level target or IGNORE, logits) for every turn, in order (eval mode)."""
    head.eval()
    with torch.no_grad():
        for start in range(0, len(dialogues), chunk):
            ds = dialogues[start : start + chunk]
            emb, cust, labels = to_batch(ds, feats[start : start + chunk])
            logits, _ = head(emb, cust)
            for i, d in enumerate(ds):
                for t, u in enumerate(d.utterances):
                    yield u, int(labels[i, t]), logits[i, t]


def predict(head: TurnHead, dialogues, feats) -> tuple[list[int], list[int], list[int]]:
    """Predicted 5-level class, gold 5-level and gold 3-class label of each rated customer turn."""
    pred, gold5, gold3 = [], [], []
    for u, label, logits in turn_outputs(head, dialogues, feats):
        if label != IGNORE:
            pred.append(int(logits.argmax()))
            gold5.append(label)
            gold3.append(label_3(u.scores))
    return pred, gold5, gold3


def metrics(pred: list[int], gold5: list[int], gold3: list[int]) -> dict:
    to3 = [0 if p < 2 else (1 if p == 2 else 2) for p in pred]  # 5 levels folded to 3
    per_class = f1_score(gold5, pred, labels=list(range(5)), average=None, zero_division=0)
    return {
        "turns": len(gold5),
        "macro_f1": float(f1_score(gold5, pred, labels=list(range(5)), average="macro",
                                   zero_division=0)),
        "per_class_f1": {LEVELS[k]: float(v) for k, v in enumerate(per_class)},
        "support": {LEVELS[k]: gold5.count(k) for k in range(5)},
        "accuracy": float(accuracy_score(gold5, pred)),
        "three_class_from_5": {
            "accuracy": float(accuracy_score(gold3, to3)),
            "macro_f1": float(f1_score(gold3, to3, labels=[0, 1, 2], average="macro",
                                       zero_division=0)),
        },
    }


def meld_metrics(head: TurnHead, dialogues: list[Dialogue], feats: list[np.ndarray]) -> dict:
    """MELD test sentiment (3 classes): the predicted level folded to negative/neutral/positive."""
    names = ["negative", "neutral", "positive"]
    pred, gold = [], []
    for u, _, logits in turn_outputs(head, dialogues, feats):
        k = int(logits.argmax())
        pred.append(0 if k < 2 else (1 if k == 2 else 2))
        gold.append(names.index(u.sentiment))
    return {"turns": len(gold),
            "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
            "weighted_f1": float(f1_score(gold, pred, average="weighted", zero_division=0)),
            "accuracy": float(accuracy_score(gold, pred))}


def load_splits(limit: int | None) -> dict[str, dict[str, list[Dialogue]]]:
    out: dict[str, dict[str, list[Dialogue]]] = {}
    for corpus in USS_CORPORA:
        dialogues = load_uss(corpus)
        split = uss_split(corpus)
        out[corpus] = {}
        for name, idx in split.items():
            cap = None if limit is None else max(2, limit if name == "train" else limit // 8)
            out[corpus][name] = [dialogues[i] for i in idx[:cap]]
    return out


def markdown(r: dict) -> str:
    """The report as a table a person reads."""
    lines = [f"# First model: {r['train_data']}", "",
             f"Command: `{r['command']}` (seed {r['seed']}, best epoch {r['best_epoch']} of "
             f"{r['epochs']} by USS validation macro-F1 {r['valid_macro_f1']:.3f}, "
             f"{r['seconds']} s on 2 CPU cores).", "",
             f"Split: {r['split']}. Label: {r['label']}.", "",
             "| test set | model | turns | macro-F1 | " + " | ".join(LEVELS)
             + " | 3-class acc | 3-class macro-F1 |",
             "|---|---|---|---|" + "---|" * len(LEVELS) + "---|---|"]
    for corpus in (*USS_CORPORA, "MWOZ+SGD"):
        for model in ("turn_head", "majority_class"):
            m = r["test"][corpus][model]
            lines.append(f"| {corpus} | {model} | {m['turns']} | {m['macro_f1']:.3f} | "
                         + " | ".join(f"{m['per_class_f1'][k]:.3f}" for k in LEVELS)
                         + f" | {m['three_class_from_5']['accuracy']:.3f}"
                         f" | {m['three_class_from_5']['macro_f1']:.3f} |")
    sup = r["test"]["MWOZ+SGD"]["turn_head"]["support"]
    meld = r["test"]["MELD"]
    lines += ["", "Test support per level: " + ", ".join(f"{k} {v}" for k, v in sup.items()),
              "", "3-class columns fold the predicted level (1-2 negative, 3 neutral, 4-5 "
              "positive) against the mean-score label of later work; the model is not trained "
              "for that scheme.", "",
              f"MELD test sentiment (levels folded to 3 classes): macro-F1 {meld['macro_f1']:.3f}, "
              f"weighted-F1 {meld['weighted_f1']:.3f}, accuracy {meld['accuracy']:.3f} "
              f"({meld['turns']} utterances).", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--dialogues", type=int, default=None, help="train dialogues per corpus (slice)")
    p.add_argument("--no-meld", action="store_true",
                   help="train on USS only (default: USS + MELD train sentiment)")
    p.add_argument("--encoder", type=Path, default=MODEL_REPOSITORY / "encoder/1/model.onnx")
    p.add_argument("--tokenizer", type=Path, default=None, help="tokenizer.json (default MiniLM)")
    p.add_argument("--out-dir", type=Path, default=MODEL_REPOSITORY, help="model repository")
    p.add_argument("--report", type=Path, default=REPORTS / "first_model.json")
    p.add_argument("--checkpoint", type=Path, default=ROOT / "training/checkpoints/turn_head.pt")
    args = p.parse_args()
    seed_all(args.seed)
    t0 = time.time()

    data = load_splits(args.dialogues)
    feats = {c: {s: dialogue_features(ds, args.encoder, args.tokenizer) for s, ds in sp.items()}
             for c, sp in data.items()}
    train = [(d, f) for c in USS_CORPORA for d, f in zip(data[c]["train"], feats[c]["train"],
                                                         strict=True)]
    if not args.no_meld:
        meld = load_meld("train")[: args.dialogues]
        train += list(zip(meld, dialogue_features(meld, args.encoder, args.tokenizer), strict=True))
    valid_d = [d for c in USS_CORPORA for d in data[c]["valid"]]
    valid_f = [f for c in USS_CORPORA for f in feats[c]["valid"]]

    counts = np.bincount([lab for d, _ in train for u in d.utterances
                          if (lab := turn_label(u)) != IGNORE], minlength=5).astype(np.float64)
    weights = torch.tensor((counts.sum() / np.maximum(counts, 1)) ** 0.5, dtype=torch.float32)
    weights = weights / weights.mean()

    head = TurnHead(HeadConfig(embed_dim=train[0][1].shape[1]))
    opt = torch.optim.Adam(head.parameters(), lr=1e-3, weight_decay=1e-5)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=IGNORE)
    best = (-1.0, 0, None)
    for epoch in range(1, args.epochs + 1):
        head.train()
        random.shuffle(train)
        for start in range(0, len(train), 32):
            chunk = train[start : start + 32]
            emb, cust, labels = to_batch([d for d, _ in chunk], [f for _, f in chunk])
            logits, _ = head(emb, cust)
            loss = loss_fn(logits.reshape(-1, 5), labels.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
        score = metrics(*predict(head, valid_d, valid_f))["macro_f1"]
        print(f"epoch {epoch:3d} loss {loss.item():.4f} valid macro-F1 {score:.4f}", flush=True)
        if score > best[0]:
            best = (score, epoch, {k: v.clone() for k, v in head.state_dict().items()})
    head.load_state_dict(best[2])
    head.eval()

    results: dict = {"valid_macro_f1": best[0], "best_epoch": best[1], "test": {}}
    all_pred, all_g5, all_g3 = [], [], []
    for corpus in USS_CORPORA:
        pred, g5, g3 = predict(head, data[corpus]["test"], feats[corpus]["test"])
        results["test"][corpus] = {"turn_head": metrics(pred, g5, g3),
                                   "majority_class": metrics([2] * len(g5), g5, g3)}
        all_pred += pred
        all_g5 += g5
        all_g3 += g3
    results["test"]["MWOZ+SGD"] = {"turn_head": metrics(all_pred, all_g5, all_g3),
                                   "majority_class": metrics([2] * len(all_g5), all_g5, all_g3)}

    meld_test = load_meld("test")[: args.dialogues]
    meld_feats = dialogue_features(meld_test, args.encoder, args.tokenizer)
    results["test"]["MELD"] = meld_metrics(head, meld_test, meld_feats)
    out = args.out_dir / "turn_head" / "1" / "model.onnx"
    args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    export_head(head, out)
    save_checkpoint(args.checkpoint, head,
                    {"seed": args.seed, "best_epoch": best[1]})
    results.update({
        "command": "python -m training.train" + (f" --dialogues {args.dialogues}"
                                                 if args.dialogues else "")
                   + (" --no-meld" if args.no_meld else ""),
        "train_data": "USS MWOZ+SGD train" + ("" if args.no_meld else " + MELD train sentiment"),
        "seed": args.seed, "epochs": args.epochs, "train_dialogues": len(train),
        "split": "published USS dialogue split (shared/data/uss/splits.json)",
        "label": "5 levels, majority vote of annotators, ties to the lower rating",
        "class_weights": [round(float(w), 4) for w in weights],
        "seconds": round(time.time() - t0, 1),
    })
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(results, indent=2) + "\n")
    args.report.with_suffix(".md").write_text(markdown(results))
    print(json.dumps(results["test"]["MWOZ+SGD"], indent=2))


if __name__ == "__main__":
    main()
