"""Export the served models into the Triton model repository.

`python -m training.export encoder` writes model_repository/encoder/1/model.onnx (large, not
committed: `make setup` runs it). The trained head is exported by training.train.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training.encoder import export_encoder
from training.model import TurnHead, TurnHeadStep
from training.paths import MODEL_REPOSITORY


def export_head(head: TurnHead, out: Path, opset: int = 17) -> None:
    """Export one step of the head with explicit state in and out, batch axis dynamic."""
    step = TurnHeadStep(head.eval())
    cfg = head.cfg
    args = (torch.zeros(2, cfg.embed_dim), torch.ones(2, 1), torch.zeros(2, cfg.hidden))
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(
            step,
            args,
            str(out),
            input_names=["embedding", "is_customer", "state"],
            output_names=["probs", "state_out"],
            dynamic_axes={n: {0: "batch"} for n in
                          ("embedding", "is_customer", "state", "probs", "state_out")},
            opset_version=opset,
            dynamo=False,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=["encoder"])
    parser.add_argument("--repo", type=Path, default=MODEL_REPOSITORY)
    parser.add_argument("--force", action="store_true", help="export even if the file exists")
    args = parser.parse_args()
    out = args.repo / "encoder" / "1" / "model.onnx"
    if out.exists() and not args.force:
        print(f"{out} exists")
        return
    export_encoder(out)
    print(f"exported {out}")


if __name__ == "__main__":
    main()
