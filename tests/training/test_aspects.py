"""Aspect head: ONNX export matches torch (with padding), the span decoder keeps exact
code-point bounds on emoji, combining marks and RTL text, and the ABSA tag alignment round
trips (a few seconds; a random head when training/checkpoints/aspects.pt is absent)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from training.aspects import TAGS, absa, decode
from training.aspects.export import CHECKPOINT, export
from training.aspects.head import HeadConfig, build, save

torch.set_num_threads(1)

LINES = [
    "x####I=O charge=O it=O at=O night=O and=O skip=O taking=O the=O cord=T-NEU with=O me=O "
    "because=O of=O the=O good=O battery=T-POS life=T-POS .=O",
    "x####The=O tech=T-NEU guy=T-NEU then=O said=O the=O service=T-NEG center=T-NEG does=O "
    "not=O do=O 1-to-1=O exchange=O ,=O the=O \"sales\"=T-NEG team=T-NEG .=O",
    "x####Great=O food=T-POS but=O the=O service=T-NEG was=O dreadful=O !=O",
    "x####The=O DV4-1222nr=T-NEU screen=T-POS is=O fine=O",
]
TEXTS = ["The café e\u0301te was great 👍🏽 but the wifi 👩\u200d💻 failed",
         "הארוחה was good, الخدمة بطيئة and the room was e\u0301norme!",
         "the battery life. is great"]


@pytest.fixture(scope="module", params=["tagger", "interactive"])
def checkpoint(request, tmp_path_factory) -> Path:
    if request.param == "tagger" and CHECKPOINT.exists():
        return CHECKPOINT
    torch.manual_seed(0)
    cfg = HeadConfig(kind=request.param)
    path = tmp_path_factory.mktemp("ckpt") / "aspects.pt"
    save(path, build(cfg), cfg, {})
    return path


def test_export_matches_torch_with_padding(checkpoint, tmp_path):
    import onnxruntime as ort

    from training.aspects.head import Served, load

    onnx_path = export(tmp_path, checkpoint)
    config = (tmp_path / "aspects" / "config.pbtxt").read_text()
    assert 'key: "tags"' in config and 'key: "min_confidence"' in config
    assert "max_batch_size: 128" in config and "dims: [ -1, 384 ]" in config
    head, _, _ = load(checkpoint)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(3, 11, 384, generator=g)
    mask = torch.ones(3, 11, dtype=torch.int64)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    tokens[mask == 0] = 5.0  # padding junk must not reach real positions
    with torch.no_grad():
        ref = Served(head)(tokens, mask).numpy()
        alone = Served(head)(tokens[1:2, :7], mask[1:2, :7]).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"tokens": tokens.numpy(), "attention_mask": mask.numpy()})[0]
    assert got.shape == (3, 11, len(TAGS))
    np.testing.assert_allclose(got, ref, atol=1e-4)
    np.testing.assert_allclose(got[1, :7], alone[0], atol=1e-4)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-4)


def random_probs(n: int, rng: np.random.Generator) -> np.ndarray:
    p = np.zeros((n, len(TAGS)))
    p[np.arange(n), rng.integers(0, len(TAGS), n)] = 1.0
    return 0.9 * p + 0.1 * rng.dirichlet(np.ones(len(TAGS)), n)


@pytest.mark.parametrize("text", TEXTS)
def test_decoder_spans_are_exact_slices(text):
    enc = absa.tokenizer().encode(text)
    offsets = [tuple(o) for o in enc.offsets]
    rng = np.random.default_rng(0)
    found = 0
    for _ in range(50):
        for s in decode.spans(random_probs(len(offsets), rng), offsets, text, 0.0):
            found += 1
            assert s["text"] == text[s["start"]: s["end"]] and s["text"].strip() == s["text"]
            assert s["polarity"] in ("positive", "negative", "neutral")
            assert 0.0 <= s["confidence"] <= 1.0
    assert found > 0


def tag_each_word(text: str, chosen: dict[str, str]) -> list[dict]:
    enc = absa.tokenizer().encode(text)
    offsets = [tuple(o) for o in enc.offsets]
    p = np.zeros((len(offsets), len(TAGS)))
    p[:, 0] = 1.0
    for i, (a, b) in enumerate(offsets):
        word = next((w for w in chosen if text.find(w) == a), None)
        if word and b > a:
            p[i] = 0.0
            p[i, TAGS.index(chosen[word])] = 1.0
    return decode.spans(p, offsets, text, 0.5)


def test_decoder_keeps_graphemes_and_rtl_words():
    text = TEXTS[0]
    got = tag_each_word(text, {"café": "B-POS", "e\u0301te": "B-NEG", "👍🏽": "B-NEU",
                               "wifi": "B-NEG", "👩": "I-NEG"})
    assert [(s["text"], s["polarity"]) for s in got] == [
        ("café", "positive"), ("e\u0301te", "negative"), ("👍🏽", "neutral"),
        ("wifi 👩\u200d💻", "negative")]
    text = TEXTS[1]
    got = tag_each_word(text, {"הארוחה": "B-POS", "الخدمة": "B-NEG", "e\u0301norme": "B-NEU"})
    assert [s["text"] for s in got] == ["הארוחה", "الخدمة", "e\u0301norme"]
    assert tag_each_word(TEXTS[2], {"battery": "B-POS", "life": "I-POS"})[0]["text"] == \
        "battery life"


def test_decoder_floor_and_padding_rows():
    text = "the screen is bad"
    enc = absa.tokenizer().encode(text)
    offsets = [tuple(o) for o in enc.offsets]
    p = np.full((len(offsets) + 4, len(TAGS)), 1 / 7)  # 4 padding rows
    p[:, 0] = 0.0
    p[:, 1:] = 1 / 6
    p[2] = [0.4, 0.0, 0.0, 0.6, 0.0, 0.0, 0.0]  # "screen": B-NEG, conf 0.6
    p[1] = p[3] = p[4] = [1.0, 0, 0, 0, 0, 0, 0]
    assert [s["text"] for s in decode.spans(p, offsets, text, 0.5)] == ["screen"]
    assert decode.spans(p, offsets, text, 0.7) == []


def test_alignment_round_trip():
    for line in LINES:
        s = absa.parse(line)
        enc = absa.encode(s)
        assert absa.decode_labels(enc) == absa.unified(s.tags)
        assert absa.tagged_spans(absa.decode_labels(enc)) == absa.spans(s.tags)
        for w, p in enumerate(enc.first):
            a, b = enc.offsets[p]
            assert s.text[a:b].lower() == s.words[w].lower()[: b - a]
    s = absa.parse(LINES[1])
    assert absa.spans(s.tags) == [(1, 3, "NEU"), (6, 8, "NEG"), (15, 17, "NEG")]
