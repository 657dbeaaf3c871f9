"""The TL-ERC / SI-MTL study: pre-train the context model on unlabelled SGD dialogues, then
fine-tune every arm on USS (at 10/25/50/100 % of its training dialogues) and MELD, 3 seeds.

    python -m training.pretraining                 # the full study (about an hour on 2 cores)
    python -m training.pretraining --quick         # a smoke run: small corpora, 1 seed

Writes reports/pretraining.json and reports/pretraining.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from training.machine import machine
from training.paths import REPORTS, ROOT
from training.pretraining import corpora, report
from training.pretraining.train import finetune, pretrain

ARMS = ("none", "tl_erc", "si_mtl", "tl_erc+si_mtl", "tl_erc_retrieval")
FRACTIONS = (0.1, 0.25, 0.5, 1.0)
CONTEXT_INIT = {o: ROOT / f"training/checkpoints/context_{o}.pt"
                for o in ("generative", "retrieval")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--pretrain-dialogues", type=int, default=6000)
    p.add_argument("--pretrain-epochs", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=REPORTS)
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    n_pre, epochs = args.pretrain_dialogues, args.pretrain_epochs
    if args.quick:
        seeds, n_pre, epochs = seeds[:1], 300, 1
    t0 = time.time()
    stages: dict[str, float] = {}

    sgd_train, sgd_dev, excluded = corpora.sgd_unlabelled(n_pre)
    uss = {p: corpora.uss(p) for p in ("train", "valid", "test")}
    meld = {p: corpora.meld(p) for p in ("train", "dev", "test")}
    if args.quick:
        uss = {k: v.subset(list(range(min(len(v), 120)))) for k, v in uss.items()}
        meld = {k: v.subset(list(range(min(len(v), 80)))) for k, v in meld.items()}
    stages["vectors_seconds"] = round(time.time() - t0, 1)

    states, pre_reports = {}, {}
    for objective in ("generative", "retrieval"):
        pre_texts = (sgd_train.texts or [], sgd_dev.texts or [])
        states[objective], pre_reports[objective] = pretrain(objective, sgd_train, sgd_dev,
                                                             pre_texts, epochs)
    if not args.quick:  # the served model's training can start from them (finetune --context-init)
        for objective, state in states.items():
            torch.save({k: v.half() for k, v in state.items()}, CONTEXT_INIT[objective])
    init = {"none": None, "si_mtl": None, "tl_erc": states["generative"],
            "tl_erc+si_mtl": states["generative"], "tl_erc_retrieval": states["retrieval"]}

    runs = []
    for fraction in FRACTIONS:
        keep = corpora.fraction(len(uss["train"]), fraction)
        train = uss["train"].subset(keep)
        for arm in ARMS:
            for seed in seeds:
                r = finetune("uss", arm, train, uss["valid"], uss["test"], seed, init[arm])
                runs.append({"dataset": "USS", "fraction": fraction, **r})
                print(time.strftime("%H:%M:%S"), "USS", fraction, arm, seed,
                      r["best_epoch"], {c: m["macro_f1"] for c, m in r["test"].items()},
                      flush=True)
    for arm in ARMS:
        for seed in seeds:
            r = finetune("meld", arm, meld["train"], meld["dev"], meld["test"], seed, init[arm])
            runs.append({"dataset": "MELD", "fraction": 1.0, **r})
            print(time.strftime("%H:%M:%S"), "MELD", arm, seed, r["best_epoch"],
                  r["test"]["MELD"], flush=True)
    stages["total_seconds"] = round(time.time() - t0, 1)
    result = {"command": "python -m training.pretraining" + (" --quick" if args.quick else ""),
              "machine": machine(), "encoder": "base MiniLM-L6, frozen (utterance vectors)",
              "pretraining_data": {"corpus": "sgd-dialogues", **excluded},
              "pretraining": pre_reports, "stages": stages, "seeds": seeds,
              "fractions": list(FRACTIONS), "arms": list(ARMS), "runs": runs,
              "summary": report.summary(runs)}
    args.out.mkdir(parents=True, exist_ok=True)
    name = "pretraining_quick" if args.quick else "pretraining"
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / f"{name}.md").write_text(report.markdown(result))
    print(report.markdown(result))


if __name__ == "__main__":
    main()
