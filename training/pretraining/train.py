"""Pre-training of the context model on unlabelled dialogue, and fine-tuning of each arm.

Arms: none (GRU from scratch), tl_erc (GRU from generative pre-training), si_mtl (speaker
identification as an auxiliary loss), tl_erc+si_mtl; tl_erc_retrieval is the cheaper objective.

SI-MTL's task (paper 002 identifies the speaker of each utterance):
  USS   roles alternate and the role flag is an input, so "who speaks" is trivial as such. The
        flag of 30 % of the turns is hidden (0.5) in training and a head on h_t names the
        speaker of those turns: customer or agent, read from the words and the context.
  MELD  the character: index of the speaker among the dialogue's speakers in order of first
        appearance (0..5), a head on h_t, every turn (the paper's setting).
Serving cost of either: none (the head is dropped, the flag is always known at serving time).
"""

from __future__ import annotations

import copy
import random
import time

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score
from torch import nn

from training.finetune import sqrt_inverse_frequency
from training.pretraining.context import PAD, Context, Generative, Retrieval, Vocabulary
from training.pretraining.corpora import MAX_SPEAKERS, Set

TASKS = {
    "uss": {"heads": {"satisfaction": 3, "levels": 5}, "weights": {"satisfaction": 1.0,
                                                                   "levels": 0.5},
            "speaker": 2},
    "meld": {"heads": {"emotion": 7, "sentiment": 3}, "weights": {"emotion": 1.0,
                                                                 "sentiment": 0.5},
             "speaker": MAX_SPEAKERS},
}
HIDE_ROLE = 0.3
SI_WEIGHT = 0.5


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def groups(n: int, size: int, rng: random.Random | None) -> list[list[int]]:
    order = list(range(n))
    if rng is not None:
        rng.shuffle(order)
    return [order[i: i + size] for i in range(0, n, size)]


def padded(s: Set, dialogues: list[int], labels: tuple[str, ...] = ()):
    """x [B, T, E], cust [B, T, 1], mask [B, T] and labels [B, T] (-1 padding)."""
    lens = [int(s.offsets[d + 1] - s.offsets[d]) for d in dialogues]
    t = max(lens)
    x = torch.zeros(len(dialogues), t, s.vectors.shape[1])
    cust = torch.zeros(len(dialogues), t, 1)
    mask = torch.zeros(len(dialogues), t, dtype=torch.bool)
    ys = {k: torch.full((len(dialogues), t), -1, dtype=torch.long) for k in labels}
    for b, (d, n) in enumerate(zip(dialogues, lens, strict=True)):
        a = int(s.offsets[d])
        x[b, :n] = torch.from_numpy(s.vectors[a: a + n])
        cust[b, :n, 0] = torch.from_numpy(s.customer[a: a + n])
        mask[b, :n] = True
        for k in labels:
            ys[k][b, :n] = torch.from_numpy(s.labels[k][a: a + n])
    return x, cust, mask, ys


# ---- pre-training -------------------------------------------------------------------------

def tokenised(texts: list[str]) -> list[list[int]]:
    from tokenizers import Tokenizer

    from worker.tokenizer import default_tokenizer_path

    tok = Tokenizer.from_file(str(default_tokenizer_path()))
    return [e.ids[1:-1] for e in tok.encode_batch(texts)]  # no [CLS] / [SEP]


def pretrain(objective: str, train: Set, dev: Set, texts: tuple[list[str], list[str]],
             epochs: int, batch: int = 16, vocab_size: int = 8000, max_len: int = 24,
             log_every: int = 50) -> tuple[dict, dict]:
    """-> (GRU state dict, report with loss curves and seconds)."""
    seed_all(0)
    t0 = time.time()
    model = Context({})
    if objective == "generative":
        toks = [tokenised(t) for t in texts]
        vocab = Vocabulary(toks[0], vocab_size)
        ids = [[vocab.ids(t, max_len) for t in ts] for ts in toks]
        head: nn.Module = Generative(vocab.size)
    else:
        head = Retrieval()
    params = [*model.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)

    def loss_of(s: Set, which: int, ds: list[int]) -> torch.Tensor:
        x, cust, mask, _ = padded(s, ds)
        h = model.states(x, cust)
        src = mask[:, 1:]  # h_t predicts utterance t+1
        hs = h[:, :-1][src]
        if objective == "retrieval":
            return head.loss(hs, x[:, 1:][src])
        rows = [int(s.offsets[d]) + t + 1 for b, d in enumerate(ds)
                for t in range(int(src[b].sum()))]
        width = max(len(ids[which][r]) for r in rows)
        tgt = torch.full((len(rows), width), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            tgt[i, : len(ids[which][r])] = torch.tensor(ids[which][r])
        return head.loss(hs, tgt)

    @torch.no_grad()
    def dev_loss() -> float:
        model.eval()
        head.eval()
        vals = [loss_of(dev, 1, g).item() for g in groups(len(dev), 64, None)]
        model.train()
        head.train()
        return round(float(np.mean(vals)), 4)

    curve, dev_curve, step, run = [], [{"step": 0, "loss": dev_loss()}], 0, []
    rng = random.Random(0)
    for epoch in range(1, epochs + 1):
        for g in groups(len(train), batch, rng):
            loss = loss_of(train, 0, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            run.append(loss.item())
            if step % log_every == 0:
                curve.append({"step": step, "loss": round(float(np.mean(run)), 4)})
                run = []
        dev_curve.append({"step": step, "epoch": epoch, "loss": dev_loss()})
        print(time.strftime("%H:%M:%S"), f"pre-training {objective} epoch {epoch}: dev loss "
              f"{dev_curve[-1]['loss']}", flush=True)
    state = {k: v.detach().clone() for k, v in model.gru.state_dict().items()}
    return state, {"objective": objective, "epochs": epochs, "steps": step,
                   "batch_dialogues": batch, "train_dialogues": len(train),
                   "dev_dialogues": len(dev), "train_curve": curve, "dev_curve": dev_curve,
                   "seconds": round(time.time() - t0, 1),
                   **({"vocabulary": vocab_size, "max_tokens": max_len}
                      if objective == "generative" else {"temperature": 0.05})}


# ---- fine-tuning --------------------------------------------------------------------------

@torch.no_grad()
def predict(model: Context, s: Set, heads: tuple[str, ...]) -> dict[str, np.ndarray]:
    model.eval()
    out: dict[str, list] = {h: [] for h in heads}
    for g in groups(len(s), 64, None):
        x, cust, mask, _ = padded(s, g)
        logits = model(x, cust)
        for h in heads:
            out[h].append(logits[h][mask].numpy())
    return {h: np.concatenate(v) for h, v in out.items()}


def metrics(task: str, s: Set, pred: dict[str, np.ndarray]) -> dict:
    if task == "meld":
        ye, pe = s.labels["emotion"], pred["emotion"].argmax(-1)
        ys, ps = s.labels["sentiment"], pred["sentiment"].argmax(-1)
        return {"MELD": {
            "emotion_weighted_f1": round(100 * f1_score(ye, pe, average="weighted"), 2),
            "emotion_accuracy": round(100 * accuracy_score(ye, pe), 2),
            "sentiment_macro_f1": round(100 * f1_score(ys, ps, average="macro"), 2),
            "n": len(ye)}}
    corpus = np.repeat(np.array(s.corpus), np.diff(s.offsets))
    out = {}
    for c in sorted(set(s.corpus)):
        sel = (corpus == c) & (s.labels["satisfaction"] >= 0)
        y3, p3 = s.labels["satisfaction"][sel], pred["satisfaction"][sel].argmax(-1)
        y5, p5 = s.labels["levels"][sel], pred["levels"][sel].argmax(-1)
        out[c] = {"accuracy": round(100 * accuracy_score(y3, p3), 2),
                  "macro_f1": round(100 * f1_score(y3, p3, average="macro"), 2),
                  "levels_macro_f1": round(100 * f1_score(y5, p5, average="macro"), 2),
                  "n": int(sel.sum())}
    return out


def selection_score(task: str, s: Set, pred: dict[str, np.ndarray]) -> float:
    """USS: pooled satisfaction macro-F1 (as training.finetune); MELD: emotion weighted F1."""
    if task == "meld":
        return f1_score(s.labels["emotion"], pred["emotion"].argmax(-1), average="weighted")
    sel = s.labels["satisfaction"] >= 0
    return f1_score(s.labels["satisfaction"][sel], pred["satisfaction"][sel].argmax(-1),
                    average="macro")


def finetune(task: str, arm: str, train: Set, valid: Set, test: Set, seed: int,
             pretrained: dict | None, max_epochs: int = 15, patience: int = 4,
             batch: int = 16) -> dict:
    spec = TASKS[task]
    si = "si_mtl" in arm
    seed_all(seed)
    t0 = time.time()
    heads = dict(spec["heads"])
    if si:
        heads["speaker"] = spec["speaker"]
    model = Context(heads)
    if pretrained is not None:
        model.gru.load_state_dict(pretrained)
    names = tuple(spec["heads"])
    losses = {n: nn.CrossEntropyLoss(weight=sqrt_inverse_frequency(train.labels[n], c),
                                     ignore_index=-1)
              for n, c in spec["heads"].items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    rng = random.Random(seed)
    best, history, bad = (-1.0, None, 0), [], 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        for g in groups(len(train), batch, rng):
            labels = (*names, "speaker") if task == "meld" and si else names
            x, cust, mask, ys = padded(train, g, labels)
            if si and task == "uss":
                hide = (torch.rand(mask.shape) < HIDE_ROLE) & mask
                ys["speaker"] = torch.where(hide, cust[..., 0].long(), -1)
                cust = torch.where(hide.unsqueeze(-1), torch.full_like(cust, 0.5), cust)
            logits = model(x, cust)
            loss = sum(spec["weights"][n] * losses[n](logits[n].reshape(-1, c),
                                                      ys[n].reshape(-1))
                       for n, c in spec["heads"].items() if (ys[n] >= 0).any())
            if si and (ys["speaker"] >= 0).any():
                loss = loss + SI_WEIGHT * nn.functional.cross_entropy(
                    logits["speaker"].reshape(-1, heads["speaker"]),
                    ys["speaker"].reshape(-1), ignore_index=-1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        score = selection_score(task, valid, predict(model, valid, names))
        history.append(round(100 * score, 2))
        if score > best[0]:
            best, bad = (score, copy.deepcopy(model.state_dict()), epoch), 0
        else:
            bad += 1
            if bad >= patience:
                break
    model.load_state_dict(best[1])
    return {"task": task, "arm": arm, "seed": seed, "train_dialogues": len(train),
            "best_epoch": best[2], "epochs_run": len(history),
            "valid_score": round(100 * best[0], 2), "valid_curve": history,
            "test": metrics(task, test, predict(model, test, names)),
            "seconds": round(time.time() - t0, 1)}
