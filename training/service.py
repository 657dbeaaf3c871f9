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

Written service turns (`training/service_turns.jsonl`, ours): customer turns of live service
chat written for training by writers who never saw the check set (training/check_set.json):
complaints (calm to furious, some sarcastic, many without an emotion word), neutral requests (at
least 40 % using cancel / refund / problem / lost procedurally) and praise, in 12 domains
(the check set's five and seven others). The writers and the check set's share a style, so any
turn as close as NEAR_CHECK_SET to a check-set turn (difflib's ratio, lower case; some requests
came out word for word) is left out. Each line has a seeded, stratified split (a fifth valid),
fixed in the file. A second batch, hard cases (calm requests to cancel, refund, replace or
report a fault, complaints without an emotion word), is train only ("train_hard"), so the valid
split stays the one earlier models were judged on; its turns near a check-set or a valid turn
are left out:

    python -m training.service --written a.jsonl b.jsonl --hard c.jsonl d.jsonl
"""

from __future__ import annotations

import argparse
import csv
import difflib
import gzip
import json
import random
import re
from pathlib import Path

from training.paths import CHECK_SET, ROOT

PATH = ROOT / "training" / "service_requests.json.gz"
WRITTEN = ROOT / "training" / "service_turns.jsonl"
NEAR_CHECK_SET = 0.75
KIND_SENTIMENT = {"complaint": "negative", "neutral": "neutral", "praise": "positive"}
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


def near_check_set(text: str, check: list[str]) -> bool:
    t = text.lower()
    return any(difflib.SequenceMatcher(None, t, c).ratio() >= NEAR_CHECK_SET for c in check)


def written_rows(paths: list[Path], near: list[str], seen: set[str]) -> list[dict]:
    """The turns of jsonl files, each text once (`seen` carries over calls), less those as close
    as NEAR_CHECK_SET to one of `near` (lower case)."""
    if not paths:
        return []
    rows = [json.loads(line) for path in paths
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if not (r["text"] in seen or seen.add(r["text"]))]
    kept = [r for r in rows if not near_check_set(r["text"], near)]
    print(f"{', '.join(map(str, paths))}: left out {len(rows) - len(kept)} turns near "
          f"{len(near)} held-out turns")
    return kept


def split_written(rows: list[dict], seed: int = 0, valid: float = 0.2) -> list[dict]:
    """Each (domain, kind) shuffled with `seed`; its first fifth is valid, the rest train."""
    out = []
    for key in sorted({(r["domain"], r["kind"]) for r in rows}):
        group = sorted((r for r in rows if (r["domain"], r["kind"]) == key),
                       key=lambda r: r["text"])
        random.Random(f"{seed}:{key}").shuffle(group)
        cut = round(valid * len(group))
        out += [{**r, "split": "valid" if i < cut else "train"} for i, r in enumerate(group)]
    return out


def load_written(split: str, path: Path = WRITTEN) -> list[tuple[str, str]]:
    """(text, sentiment) of the written service turns of one split ("train", "valid",
    "train_hard"):
    complaints negative, requests neutral, praise positive."""
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r["text"], KIND_SENTIMENT[r["kind"]]) for r in rows if r["split"] == split]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clinc", type=Path, help="CLINC150 data/data_full.json")
    p.add_argument("--domains", type=Path, help="CLINC150 data/domains.json")
    p.add_argument("--banking77", type=Path, help="folder with train/test.csv")
    p.add_argument("--out", type=Path, default=PATH)
    p.add_argument("--written", type=Path, nargs="+", help="jsonl files of written turns")
    p.add_argument("--hard", type=Path, nargs="*", default=[],
                   help="with --written: jsonl files of hard cases, train only")
    args = p.parse_args()
    if args.written:
        check = [i["text"].lower() for i in json.loads(CHECK_SET.read_text())["items"]]
        seen: set[str] = set()
        rows = split_written(written_rows(args.written, check, seen))
        valid = [r["text"].lower() for r in rows if r["split"] == "valid"]
        rows += [{**r, "split": "train_hard"}
                 for r in written_rows(args.hard, check + valid, seen)]
        WRITTEN.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                           encoding="utf-8")
        print({s: sum(r["split"] == s for r in rows) for s in ("train", "valid", "train_hard")})
        return
    if not (args.clinc and args.domains and args.banking77):
        p.error("--clinc, --domains and --banking77 are required (or --written)")
    data = build(args.clinc, args.domains, args.banking77)
    with gzip.open(args.out, "wt", encoding="utf-8") as f:
        json.dump(data, f, separators=(",", ":"))
    print({s: (len(data[s]), sum(r["label"] == "negative" for r in data[s])) for s in SPLITS})


if __name__ == "__main__":
    main()
