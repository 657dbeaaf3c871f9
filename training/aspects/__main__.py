"""python -m training.aspects [imn|head|uss|report ...]   (no stage: all of them, in order)

imn     IMN on GloVe per data set (--datasets) -> reports/aspects/imn_<data set>.json
head    heads over the served MiniLM token states, trained on the three training sets
        together; the best on dev is saved to training/checkpoints/aspects.pt -> head.json
uss     the saved head on 100 customer turns of the USS test split -> uss.json
report  reports/aspects/eval.md and eval.json from the stage files
"""

from __future__ import annotations

import argparse
import time

import torch

STAGES = ("imn", "head", "uss", "report")


def main() -> None:
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("stages", nargs="*", default=list(STAGES))
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--datasets", nargs="+", default=["laptop14", "rest14", "rest15"])
    ap.add_argument("--imn-epochs", type=int, default=8)
    ap.add_argument("--head-epochs", type=int, default=30)
    args = ap.parse_args()
    for stage in args.stages or STAGES:
        started = time.time()
        if stage == "imn":
            from training.aspects import train_imn

            train_imn.run_all(args.seeds, args.imn_epochs, started, args.datasets)
        elif stage == "head":
            from training.aspects import train_head

            train_head.run_all(args.seeds, args.head_epochs, started)
        elif stage == "uss":
            from training.aspects import uss

            uss.run(started)
        else:
            from training.aspects import report

            report.write_report()


if __name__ == "__main__":
    main()
