"""Plain service requests as neutral training data: what a customer asks when nothing is wrong
with the service yet, many of them about cancelling, lost cards, declined payments or delays.

USS teaches that customers who talk about cancelling are unhappy ones, and the sentiment corpora
(tweets, Reddit, a sitcom) never saw a bank or airline request, so every served head read
"How do I cancel a direct debit?" as a complaint. These requests are labelled neutral.

Sources (both crowd-written requests with an intent label; kept here in a derived file,
`training/service_requests.json.gz`, with attribution as their licences ask):
  CLINC150  Larson et al., EMNLP 2019, github.com/clinc/oos-eval (CC BY 3.0): the banking,
            credit_cards, travel and auto_and_commute domains; its train / val / test split.
  Banking77 Casanueva et al., NLP4ConvAI 2020, github.com/PolyAI-LDN/task-specific-datasets
            (CC BY 4.0): all 77 intents; its test split, and a seeded tenth of train as valid.
Changes: lower-cased CLINC text as published; Banking77 requests that voice anger or insult
(`EXPLICIT`, 0.5 % of them: "I hate this company! Can you delete my account?") are labelled
negative instead, because they are complaints, and nothing else is relabelled.

    python -m training.service --clinc data_full.json --domains domains.json \
        --banking77 banking_data/   # rewrites training/service_requests.json.gz
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
import re
from pathlib import Path

from training.paths import ROOT

PATH = ROOT / "training" / "service_requests.json.gz"
CLINC_DOMAINS = ("banking", "credit_cards", "travel", "auto_and_commute")
EXPLICIT = re.compile(
    r"\b(angry|annoy|ridiculous|unacceptable|terrible|awful|worst|furious|fed up|disappoint|"
    r"upset|horrible|frustrat|stupid|useless|sick of|hate|livid|pathetic|disgust|rubbish)\w*",
    re.I)
SPLITS = ("train", "valid", "test")


def build(clinc: Path, domains: Path, banking77: Path, seed: int = 0) -> dict:
    data = json.loads(clinc.read_text())
    keep = {i for d in CLINC_DOMAINS for i in json.loads(domains.read_text())[d]}
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for ours, theirs in zip(SPLITS, ("train", "val", "test"), strict=True):
        out[ours] += [{"text": t, "intent": i, "source": "clinc150", "label": "neutral"}
                      for t, i in data[theirs] if i in keep]
    for part in ("train", "test"):
        with open(banking77 / f"{part}.csv", encoding="utf-8", newline="") as f:
            kept = [{"text": r["text"].strip(), "intent": r["category"], "source": "banking77",
                     "label": "negative" if EXPLICIT.search(r["text"]) else "neutral"}
                    for r in csv.DictReader(f)]
        if part == "test":
            out["test"] += kept
            continue
        random.Random(seed).shuffle(kept)
        cut = len(kept) // 10
        out["valid"] += kept[:cut]
        out["train"] += kept[cut:]
    return {"sources": {"clinc150": "github.com/clinc/oos-eval (CC BY 3.0)",
                        "banking77": "github.com/PolyAI-LDN/task-specific-datasets (CC BY 4.0)"},
            "clinc_domains": list(CLINC_DOMAINS), **out}


def load(split: str, path: Path = PATH) -> list[tuple[str, str]]:
    """(text, sentiment) of one split ("train", "valid", "test"): neutral requests, and the
    few Banking77 complaints as negative."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [(r["text"], r["label"]) for r in json.load(f)[split]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clinc", type=Path, required=True, help="CLINC150 data/data_full.json")
    p.add_argument("--domains", type=Path, required=True, help="CLINC150 data/domains.json")
    p.add_argument("--banking77", type=Path, required=True, help="folder with train/test.csv")
    p.add_argument("--out", type=Path, default=PATH)
    args = p.parse_args()
    data = build(args.clinc, args.domains, args.banking77)
    with gzip.open(args.out, "wt", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    print({s: (len(data[s]), sum(r["label"] == "negative" for r in data[s])) for s in SPLITS})


if __name__ == "__main__":
    main()
