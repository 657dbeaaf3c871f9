"""Train and evaluate TML and its baselines; write reports/tml/eval.{json,md}.

    python -m training.tml_train                    # all tasks, models, 3 seeds (reports/tml/)
    python -m training.tml_train --append --tasks uss3 --models tml --seeds 0 \
        --windows 1 4 8 16 64                       # the attention-window sweep, added
    python -m training.tml_train --tasks uss3 --models tml --seeds 0   # one cell
    python -m training.tml_train --dialogues 16 --epochs 2 --out /tmp/x   # a tiny slice

Tasks: uss5 (USS MWOZ+SGD, 5 levels, majority vote, ties low), uss3 (3 classes from the mean
rating), meld3 (MELD sentiment), meld7 (MELD emotion). USS uses the published dialogue split,
MELD its official split. Models: tml, tml_no_topics, tml_no_attention, utterance_mlp (encoder
only, one utterance), logreg (frozen embeddings of the turn and its context). Frozen MiniLM
features are cached; model selection reads the validation split only.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from torch import nn

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
from training.features import dialogue_features
from training.paths import MODEL_REPOSITORY, REPORTS
from training.tml import TML, TMLConfig
from worker.bow import BagOfWords, build_vocabulary

IGNORE = -100
LAMBDA = 0.01
EMOTIONS = ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
SENTIMENTS = ("negative", "neutral", "positive")
MELD_LEVEL = {"negative": 1, "neutral": 2, "positive": 3}
NEURAL = ("tml", "tml_no_topics", "tml_no_attention", "utterance_mlp")


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    scheme: str
    class_names: tuple[str, ...]

    def label(self, u: Utterance) -> int:
        if self.name == "uss5":
            return label_5(u.scores) if u.scores else IGNORE
        if self.name == "uss3":
            return label_3(u.scores) if u.scores else IGNORE
        if self.name == "meld3":
            return SENTIMENTS.index(u.sentiment)
        if self.name == "meld7":
            return EMOTIONS.index(u.emotion)
        if self.name == "served":  # USS levels and MELD sentiment on the same 5 levels
            return label_5(u.scores) if u.scores else MELD_LEVEL.get(u.sentiment, IGNORE)
        raise ValueError(self.name)


TASKS = {
    "uss5": Task("uss5", "USS", "5-level majority vote", LEVELS),
    "uss3": Task("uss3", "USS", "3-class mean rating", ("negative", "neutral", "positive")),
    "meld3": Task("meld3", "MELD", "3-class sentiment", SENTIMENTS),
    "meld7": Task("meld7", "MELD", "7-class emotion", EMOTIONS),
    "served": Task("served", "USS+MELD", "5-level (MELD sentiment as levels 2-4)", LEVELS),
}


@dataclass
class Split:
    """Dialogues of one split with everything a model reads."""

    dialogues: list[Dialogue]
    feats: list[np.ndarray]  # [T, E] per dialogue
    bows: list[sparse.csr_matrix]  # [T, V] per dialogue
    corpus: list[str]  # corpus of each dialogue (MWOZ, SGD, MELD)


def load_task_data(task: Task, limit: int | None, encoder: Path, vocab_size: int):
    """(train, valid, test) splits and the vocabulary of the topic models (train texts only)."""
    raw: dict[str, list[tuple[str, Dialogue]]] = {"train": [], "valid": [], "test": []}
    if task.dataset in ("USS", "USS+MELD"):
        for corpus in USS_CORPORA:
            ds, split = load_uss(corpus), uss_split(corpus)
            for name, idx in split.items():
                cap = None if limit is None else max(2, limit if name == "train" else limit // 4)
                raw[name] += [(corpus, ds[i]) for i in idx[:cap]]
    if task.dataset in ("MELD", "USS+MELD"):
        for name, meld in (("train", "train"), ("valid", "dev"), ("test", "test")):
            cap = None if limit is None else max(2, limit if name == "train" else limit // 4)
            raw[name] += [("MELD", d) for d in load_meld(meld)[:cap]]
    vocab = build_vocabulary([u.text for _, d in raw["train"] for u in d.utterances], vocab_size)
    bow = BagOfWords(vocab)
    splits = []
    for name in ("train", "valid", "test"):
        dialogues = [d for _, d in raw[name]]
        splits.append(Split(dialogues, dialogue_features(dialogues, encoder),
                            [bow.counts([u.text for u in d.utterances]) for d in dialogues],
                            [c for c, _ in raw[name]]))
    return (*splits, vocab)


class UtteranceMLP(nn.Module):
    """Encoder-only baseline: each utterance alone (the paper's BERT row, encoder frozen)."""

    def __init__(self, embed_dim: int, hidden: int, classes: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, hidden), nn.ReLU(),
                                 nn.Dropout(dropout), nn.Linear(hidden, classes))

    def forward(self, emb, is_customer, bow):
        return self.net(emb), None


def batch_tensors(task: Task, split: Split, rows: list[int]):
    """Padded emb [B,T,E], is_customer [B,T,1], bow [B,T,V], labels [B,T]."""
    t_max = max(len(split.dialogues[i].utterances) for i in rows)
    e, v = split.feats[rows[0]].shape[1], split.bows[rows[0]].shape[1]
    emb = np.zeros((len(rows), t_max, e), np.float32)
    cust = np.zeros((len(rows), t_max, 1), np.float32)
    bow = np.zeros((len(rows), t_max, v), np.float32)
    labels = np.full((len(rows), t_max), IGNORE, np.int64)
    for b, i in enumerate(rows):
        d = split.dialogues[i]
        n = len(d.utterances)
        emb[b, :n] = split.feats[i]
        bow[b, :n] = split.bows[i].toarray()
        for t, u in enumerate(d.utterances):
            cust[b, t, 0] = u.role == "customer"
            labels[b, t] = task.label(u)
    return (torch.from_numpy(emb), torch.from_numpy(cust), torch.from_numpy(bow),
            torch.from_numpy(labels))


def predictions(model: nn.Module, task: Task, split: Split, chunk: int = 64):
    """Gold and predicted class of every labelled turn, with its corpus (eval mode)."""
    model.eval()
    gold, pred, corpus = [], [], []
    with torch.no_grad():
        for start in range(0, len(split.dialogues), chunk):
            rows = list(range(start, min(start + chunk, len(split.dialogues))))
            emb, cust, bow, labels = batch_tensors(task, split, rows)
            logits, _ = model(emb, cust, bow)
            keep = labels != IGNORE
            gold += labels[keep].tolist()
            pred += logits.argmax(-1)[keep].tolist()
            corpus += [split.corpus[rows[b]] for b, _ in keep.nonzero().tolist()]
    return np.array(gold), np.array(pred), np.array(corpus)


def scores(task: Task, gold: np.ndarray, pred: np.ndarray) -> dict:
    """The metrics the papers report for the scheme (scikit-learn)."""
    labels = list(range(len(task.class_names)))
    out = {"turns": len(gold),
           "accuracy": float(accuracy_score(gold, pred)),
           "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro",
                                      zero_division=0)),
           "weighted_f1": float(f1_score(gold, pred, labels=labels, average="weighted",
                                         zero_division=0)),
           "uar": float(balanced_accuracy_score(gold, pred)),
           "per_class_f1": dict(zip(task.class_names, (float(x) for x in f1_score(
               gold, pred, labels=labels, average=None, zero_division=0)), strict=True)),
           "support": {n: int((gold == k).sum()) for k, n in enumerate(task.class_names)}}
    return out


def by_corpus(task: Task, gold, pred, corpus) -> dict[str, dict]:
    """Metrics per test corpus, and over all of them where there are several."""
    out = {c: scores(task, gold[corpus == c], pred[corpus == c]) for c in sorted(set(corpus))}
    if len(out) > 1:
        out["+".join(sorted(set(corpus)))] = scores(task, gold, pred)
    return out


def class_weights(task: Task, split: Split) -> torch.Tensor:
    """Inverse-frequency weights, square-rooted and mean 1 (macro-F1 is the selection metric)."""
    labels = [lab for d in split.dialogues for u in d.utterances
              if (lab := task.label(u)) != IGNORE]
    counts = np.bincount(labels, minlength=len(task.class_names)).astype(np.float64)
    w = (counts.sum() / np.maximum(counts, 1)) ** 0.5
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def build(model_name: str, cfg: TMLConfig) -> nn.Module:
    if model_name == "utterance_mlp":
        return UtteranceMLP(cfg.embed_dim, cfg.hidden, cfg.classes, cfg.dropout)
    flags = {"tml": {}, "tml_no_topics": {"use_topics": False},
             "tml_no_attention": {"use_attention": False}}[model_name]
    return TML(replace(cfg, **flags))


def train_neural(model: nn.Module, task: Task, train: Split, valid: Split, epochs: int,
                 patience: int, log) -> tuple[nn.Module, int, float]:
    """Adam 1e-3, L2 1e-5, 32 dialogues a batch, L_main + λ ΣL_topic; the epoch with the best
    validation macro-F1 wins."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(task, train), ignore_index=IGNORE)
    order = list(range(len(train.dialogues)))
    best = (-1.0, 0, None)
    for epoch in range(1, epochs + 1):
        model.train()
        random.shuffle(order)
        for start in range(0, len(order), 32):
            emb, cust, bow, labels = batch_tensors(task, train, order[start : start + 32])
            logits, topic_losses = model(emb, cust, bow)
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
            if topic_losses is not None and model.cfg.use_topics:
                real = (emb.abs().sum(-1) > 0).float()  # not padding
                loss = loss + LAMBDA * sum((tl * real).sum() / real.sum() for tl in topic_losses)
            opt.zero_grad()
            loss.backward()
            opt.step()
        f1 = scores(task, *predictions(model, task, valid)[:2])["macro_f1"]
        log(f"  epoch {epoch:2d} loss {loss.item():8.4f} valid macro-F1 {f1:.4f}")
        if f1 > best[0]:
            best = (f1, epoch, {k: v.clone() for k, v in model.state_dict().items()})
        elif epoch - best[1] >= patience:
            break
    model.load_state_dict(best[2])
    return model.eval(), best[1], best[0]


def context_features(split: Split) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Per turn: its embedding, the last other-role turn's and the mean of the same role's
    earlier turns (zeros where none) — the frozen-embedding baseline of design.md."""
    rows, where = [], []
    for i, (d, f) in enumerate(zip(split.dialogues, split.feats, strict=True)):
        for t, u in enumerate(d.utterances):
            other = [k for k in range(t) if d.utterances[k].role != u.role]
            same = [k for k in range(t) if d.utterances[k].role == u.role]
            rows.append(np.concatenate([
                f[t], f[other[-1]] if other else np.zeros_like(f[t]),
                f[same].mean(0) if same else np.zeros_like(f[t])]))
            where.append((i, t))
    return np.stack(rows), where


def logreg(task: Task, train: Split, valid: Split, test: Split):
    """Class-balanced logistic regression; C picked on validation macro-F1."""
    def xy(split: Split):
        x, where = context_features(split)
        y = np.array([task.label(split.dialogues[i].utterances[t]) for i, t in where])
        keep = y != IGNORE
        return x[keep], y[keep], np.array([split.corpus[i] for i, _ in where])[keep]
    (xt, yt, _), (xv, yv, _), (xs, ys, cs) = xy(train), xy(valid), xy(test)
    best = None
    for c in (0.1, 1.0, 10.0):
        clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(xt, yt)
        f1 = f1_score(yv, clf.predict(xv), average="macro")
        if best is None or f1 > best[0]:
            best = (f1, c, clf)
    return best[0], best[1], (ys, best[2].predict(xs), cs)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run(args) -> list[dict]:
    rows: list[dict] = []
    if args.append and (args.out / "eval.json").exists():
        rows = json.loads((args.out / "eval.json").read_text())
    log = print
    for task_name in args.tasks:
        task = TASKS[task_name]
        t0 = time.time()
        train, valid, test, vocab = load_task_data(task, args.dialogues, args.encoder, args.vocab)
        log(f"{task_name}: {len(train.dialogues)}/{len(valid.dialogues)}/{len(test.dialogues)} "
            f"dialogues, vocabulary {len(vocab)}, data {time.time() - t0:.0f} s")
        cfg = TMLConfig(embed_dim=train.feats[0].shape[1], classes=len(task.class_names),
                        vocab=len(vocab), window=args.window)
        for model_name in args.models:
            seeds = args.seeds if model_name in NEURAL else [0]
            windows = args.windows if model_name == "tml" and task_name in args.window_tasks \
                else [args.window]
            for window in windows:
                for seed in seeds:
                    if window != args.window and seed != seeds[0]:
                        continue  # the window sweep runs one seed
                    seed_all(seed)
                    t1 = time.time()
                    log(f"{task_name} {model_name} window {window} seed {seed}")
                    info: dict = {}
                    if model_name == "logreg":
                        valid_f1, c, result = logreg(task, train, valid, test)
                        info = {"C": c}
                    else:
                        model = build(model_name, replace(cfg, window=window))
                        model, epoch, valid_f1 = train_neural(
                            model, task, train, valid, args.epochs, args.patience, log)
                        result = predictions(model, task, test)
                        info = {"best_epoch": epoch}
                        if model_name == "tml":
                            info["window"] = window
                        if args.save_dir and window == args.window:
                            from training.tml import save
                            args.save_dir.mkdir(parents=True, exist_ok=True)
                            save(args.save_dir / f"{task_name}-{model_name}-{seed}.pt", model,
                                 {"vocabulary": vocab, "task": task_name, "seed": seed,
                                  "classes": list(task.class_names)})
                    for corpus, metrics in by_corpus(task, *result).items():
                        rows.append({
                            "dataset": corpus if task.dataset != "MELD" else "MELD",
                            "scheme": task.scheme, "task": task_name, "split": "test",
                            "model": model_name if window == args.window
                            else f"tml_window_{window}",
                            "seed": seed, "metrics": metrics,
                            "valid_macro_f1": float(valid_f1),
                            "train_seconds": round(time.time() - t1, 1), **info})
                    log(f"  -> valid {valid_f1:.4f} test " + ", ".join(
                        f"{r['dataset']} acc {r['metrics']['accuracy']:.3f} "
                        f"F1 {r['metrics']['macro_f1']:.3f}"
                        for r in rows if r["task"] == task_name and r["model"] == (
                            model_name if window == args.window else f"tml_window_{window}")
                        and r["seed"] == seed))
                    if args.out:
                        write(args, rows)
    return rows


def write(args, rows: list[dict]) -> None:
    from training.tml_report import markdown

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "eval.md").write_text(markdown(rows, args.command))
    (args.out / "command.txt").write_text(args.command + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["uss3", "meld3", "meld7", "uss5"],
                   choices=list(TASKS))
    p.add_argument("--models", nargs="+", default=["tml", "tml_no_topics", "tml_no_attention",
                                                   "utterance_mlp", "logreg"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--window", type=int, default=32, help="attention window (turns)")
    p.add_argument("--windows", nargs="+", type=int, default=[32],
                   help="window sweep of TML (one seed)")
    p.add_argument("--window-tasks", nargs="*", default=["uss3"])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--vocab", type=int, default=2000)
    p.add_argument("--dialogues", type=int, default=None, help="train dialogues per corpus")
    p.add_argument("--encoder", type=Path, default=MODEL_REPOSITORY / "encoder/1/model.onnx")
    p.add_argument("--out", type=Path, default=REPORTS / "tml")
    p.add_argument("--save-dir", type=Path, default=None, help="keep checkpoints here")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--append", action="store_true", help="add to the rows already in --out")
    args = p.parse_args()
    import sys

    args.command = "python -m training.tml_train " + " ".join(sys.argv[1:])
    if args.append and (args.out / "command.txt").exists():
        args.command = (args.out / "command.txt").read_text().strip() + "; " + args.command
    # one thread: on this 2-core machine, shared with a broker and Triton, 2 threads ran a
    # batch 6x slower than 1 (OpenMP spinning when oversubscribed)
    torch.set_num_threads(args.threads)
    run(args)


if __name__ == "__main__":
    main()
