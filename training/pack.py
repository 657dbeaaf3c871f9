"""Everything fine-tuning reads, in one file: tokenised dialogues with their labels and the base
MiniLM weights, the word embeddings cut to the token ids the data uses.

    python -m training.pack --out .gpu/pack.pt --half   # ~35 MB, carried to a GPU machine

`training.finetune` trains from a pack, so a GPU machine needs torch and transformers only.
Sets: uss_{train,valid,test} (MWOZ + SGD, the published split, corpus per dialogue),
meld_{train,dev,test}, semeval_{train,dev,test}, goemotions_{train,dev,test},
service_{train,valid,test} (requests: training/service.py), reviews_{train,dev} (ABSA
sentences with one polarity), written_{train,valid,train_hard} (written service turns:
training/service.py).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch
from tokenizers import Tokenizer
from transformers import BertModel
from transformers.utils import logging as hf_logging

from training.data import (
    USS_CORPORA,
    Dialogue,
    head_label,
    load_goemotions,
    load_meld,
    load_review_sentences,
    load_semeval,
    load_service,
    load_uss,
    load_written,
    uss_split,
)
from training.paths import minilm_dir

MAX_TOKENS = 128  # as the worker (CHAT_MAX_TOKENS)


def labelled_sets(goemotions_train: int = 12000, service_train: int = 4000,
                  seed: int = 0) -> dict[str, list[tuple]]:
    """name -> [(corpus, dialogue)]. GoEmotions and service-request train are sampled (large,
    and each teaches one thing: explicit sentiment, plain requests)."""
    sets: dict[str, list[tuple]] = {f"uss_{p}": [] for p in ("train", "valid", "test")}
    for corpus in USS_CORPORA:
        dialogues = load_uss(corpus)
        for part, idx in uss_split(corpus).items():
            sets[f"uss_{part}"] += [(corpus, dialogues[i]) for i in idx]
    for split in ("train", "dev", "test"):
        sets[f"meld_{split}"] = [("MELD", d) for d in load_meld(split)]
        sets[f"semeval_{split}"] = [("SemEval", d) for d in load_semeval(split)]
        go = load_goemotions(split)
        if split == "train":
            go = random.Random(seed).sample(go, min(goemotions_train, len(go)))
        sets[f"goemotions_{split}"] = [("GoEmotions", d) for d in go]
    for split in ("train", "valid", "test"):
        svc = load_service(split)
        if split == "train":
            svc = random.Random(seed).sample(svc, min(service_train, len(svc)))
        sets[f"service_{split}"] = [("Service", d) for d in svc]
    for split in ("train", "dev"):
        sets[f"reviews_{split}"] = [("Reviews", d) for d in load_review_sentences(split)]
    for split in ("train", "valid", "train_hard"):
        sets[f"written_{split}"] = [("Written", d) for d in load_written(split)]
    return sets


def encode_set(items: list[tuple[str, Dialogue]], tok: Tokenizer) -> dict:
    """Flat tensors: token ids, utterance and dialogue offsets, role and labels (-1 = none)."""
    utts = [u for _, d in items for u in d.utterances]
    enc = tok.encode_batch([u.text for u in utts])
    lengths = [len(e.ids) for e in enc]

    return {
        "tokens": torch.tensor([i for e in enc for i in e.ids], dtype=torch.int32),
        "utt_offsets": torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()]),
        "dlg_offsets": torch.tensor(
            [0, *torch.tensor([len(d.utterances) for _, d in items]).cumsum(0).tolist()]),
        "customer": torch.tensor([u.role == "customer" for u in utts], dtype=torch.bool),
        **{kind: torch.tensor([head_label(u, kind) for u in utts], dtype=torch.int8)
           for kind in ("satisfaction", "levels", "sentiment")},
        "corpus": [c for c, _ in items],
    }


def build(half: bool = False, goemotions_train: int = 12000, service_train: int = 4000) -> dict:
    tok = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tok.enable_truncation(max_length=MAX_TOKENS)
    tok.no_padding()
    sets = {name: encode_set(items, tok)
            for name, items in labelled_sets(goemotions_train, service_train).items()}
    used = torch.unique(torch.cat([s["tokens"] for s in sets.values()]).long())
    remap = torch.full((tok.get_vocab_size(),), -1, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    for s in sets.values():
        s["tokens"] = remap[s["tokens"].long()].to(torch.int16 if len(used) < 32768
                                                   else torch.int32)
    hf_logging.set_verbosity_error()  # the unused pooler's load report is noise
    base = BertModel.from_pretrained(str(minilm_dir()), local_files_only=True,
                                     add_pooling_layer=False)
    weights = dict(base.state_dict())
    key = "embeddings.word_embeddings.weight"
    weights[key] = weights[key][used]
    if half:  # fp16 layers; int8 word embeddings with a scale per row (frozen in training)
        weights = {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
        emb = weights.pop(key).float()
        scale = emb.abs().amax(1, keepdim=True).clamp(min=1e-8) / 127
        weights[key + ".int8"] = torch.round(emb / scale).to(torch.int8)
        weights[key + ".scale"] = scale.half()
    config = base.config.to_dict()
    config["vocab_size"] = len(used)
    return {"bert_config": config, "weights": weights, "token_ids": used, "sets": sets}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--half", action="store_true",
                   help="fp16 layers and int8 word embeddings (a file small enough to carry)")
    args = p.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build(args.half), args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
