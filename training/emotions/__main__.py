"""python -m training.emotions [--part all|glove|states|report] [--seeds 0,1] ...

glove and states train and save runs under training/cache/emotions/runs/ (they can run side by
side, one CPU thread each); report evaluates every saved run, picks and writes the served head
(training/checkpoints/emotions.pt) and writes reports/emotions/eval.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

import torch

from training.emotions.experiments import RUNS, run_glove, run_states

LOG = RUNS / "commands.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("all", "glove", "states", "report"), default="all")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--glove-epochs", type=int, default=6)
    ap.add_argument("--states-epochs", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated states run names")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    seeds = tuple(int(s) for s in a.seeds.split(","))
    command = "python -m training.emotions " + shlex.join(sys.argv[1:])
    t0 = time.time()
    if a.part in ("all", "glove"):
        run_glove(seeds, a.glove_epochs)
    if a.part in ("all", "states"):
        run_states(seeds, a.states_epochs, tuple(filter(None, a.only.split(","))))
    RUNS.mkdir(parents=True, exist_ok=True)
    with open(LOG, "a") as f:
        f.write(json.dumps({"part": a.part, "command": command, "started": time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(t0)), "wall_s": round(time.time() - t0, 1)})
            + "\n")
    if a.part in ("all", "report"):
        from training.emotions.report import write

        rep = write(command, time.time() - t0)
        print(json.dumps(rep["served"], indent=1))


if __name__ == "__main__":
    main()
