"""Would a complaint head fix the check set? A probe on the served encoder, not a served model.

    python -m training.complaint_probe --data PATH/complaints-data.csv

complaints-data.csv is the corpus of Preoțiuc-Pietro, Găman and Aletras (ACL 2019),
github.com/danielpreotiuc/complaints-social-media (3,449 tweets to companies, label 1 =
complaint). It is not kept here: the upstream repository has no licence file. Logistic
regression and a 1-layer MLP on the served encoder's utterance vectors (seeded, stratified
80/10/10 split; @handles and URLs removed), with and without 3,000 USS-train customer turns
rated >= 3 as non-complaints; scored on its test split and on training/check_set.json (shares at
P >= 0.5). The served heads' outputs on the check set are recorded beside them.
Writes reports/complaint_probe.json.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import re
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from training.data import Dialogue, Utterance, label_3, load_uss, uss_split
from training.encoder import embed_texts
from training.evaluate import CHECK_SET, served_outputs
from training.paths import MODEL_REPOSITORY, REPORTS

ENCODER = MODEL_REPOSITORY / "encoder/1/model.onnx"


def clean(text: str) -> str:
    text = re.sub(r"https?://\S+", "", html.unescape(text))
    text = re.sub(r"(^|\s)\.?@\w+", r"\1", text).replace("#", "")
    return re.sub(r"\s+", " ", text).strip()


def uss_requests(n: int = 3000) -> list[str]:
    """USS-train customer turns rated >= 3: service talk that is certainly not a complaint."""
    texts = []
    for corpus in ("MWOZ", "SGD"):
        dialogues = load_uss(corpus)
        for i in uss_split(corpus)["train"]:
            texts += [u.text for u in dialogues[i].utterances
                      if u.role == "customer" and u.scores and label_3(u.scores) >= 1]
    return list(np.random.default_rng(0).choice(texts, n, replace=False))


def emotion_anger(texts: list[str]) -> list[float]:
    import onnxruntime as ort

    from worker.tokenizer import TurnTokenizer, default_tokenizer_path

    enc = ort.InferenceSession(str(ENCODER), providers=["CPUExecutionProvider"])
    emo = ort.InferenceSession(str(MODEL_REPOSITORY / "emotions/1/model.onnx"),
                               providers=["CPUExecutionProvider"])
    tok = TurnTokenizer(default_tokenizer_path())
    out = []
    for text in texts:  # one at a time: no padding in the token states
        (b,) = tok.buckets([text], 1)
        (tokens,) = enc.run(["tokens"], {"input_ids": b.input_ids,
                                         "attention_mask": b.attention_mask})
        out.append(float(emo.run(None, {"tokens": tokens,
                                        "attention_mask": b.attention_mask})[0][0][0]))
    return out  # E-c label order: anger first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, default=REPORTS / "complaint_probe.json")
    args = p.parse_args()
    rows = list(csv.reader(args.data.open(encoding="utf-8")))
    x = embed_texts(ENCODER, [clean(r[1]) for r in rows])
    y = np.array([int(r[2]) for r in rows])
    train, rest = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    valid, test = train_test_split(rest, test_size=0.5, stratify=y[rest], random_state=0)
    extra = embed_texts(ENCODER, uss_requests())
    items = json.loads(CHECK_SET.read_text())["items"]
    kinds = np.array([i["kind"] for i in items])
    checks = embed_texts(ENCODER, [i["text"] for i in items])

    probes = []
    models = {f"lr_c{c}": lambda c=c: LogisticRegression(C=c, max_iter=3000)
              for c in (0.1, 1.0, 10.0)}
    models["mlp_256"] = lambda: MLPClassifier((256,), alpha=1e-2, max_iter=300,
                                              early_stopping=True, random_state=0)
    for name, make in models.items():
        for with_uss in (False, True):
            xt = np.vstack([x[train], extra]) if with_uss else x[train]
            yt = np.r_[y[train], np.zeros(len(extra), int)] if with_uss else y[train]
            clf = make().fit(xt, yt)
            pv, pt = clf.predict_proba(x[valid])[:, 1], clf.predict_proba(x[test])[:, 1]
            pc = clf.predict_proba(checks)[:, 1]
            probes.append({
                "model": name, "uss_requests_as_negatives": with_uss,
                "valid": {"roc_auc": round(roc_auc_score(y[valid], pv), 4),
                          "f1": round(f1_score(y[valid], pv >= 0.5), 4)},
                "test": {"roc_auc": round(roc_auc_score(y[test], pt), 4),
                         "f1": round(f1_score(y[test], pt >= 0.5), 4)},
                "check_set_flagged": {k: round(float((pc[kinds == k] >= 0.5).mean()), 4)
                                      for k in ("complaint", "neutral", "praise")},
                "check_set_p": [round(float(v), 4) for v in pc]})

    dialogues = [Dialogue(i["id"], (Utterance("agent", i["greeting"]),
                                    Utterance("customer", i["text"]))) for i in items]
    outs = served_outputs(dialogues)
    anger = emotion_anger([i["text"] for i in items])
    served = [{"id": i["id"], "kind": i["kind"], "text": i["text"],
               "satisfaction": [round(float(v), 4) for v in o["satisfaction"][1]],
               "sentiment": [round(float(v), 4) for v in o["sentiment"][1]],
               "emotion_anger": round(a, 4)}
              for i, o, a in zip(items, outs, anger, strict=True)]
    args.out.write_text(json.dumps({
        "command": "python -m training.complaint_probe --data complaints-data.csv",
        "data": {"source": "github.com/danielpreotiuc/complaints-social-media",
                 "tweets": len(y), "complaints": int(y.sum()),
                 "split": {"train": len(train), "valid": len(valid), "test": len(test)}},
        "probes": probes, "served_heads_on_check_set": served}, indent=1) + "\n")
    for r in probes:
        print(r["model"], r["uss_requests_as_negatives"], r["test"], r["check_set_flagged"])


if __name__ == "__main__":
    main()
