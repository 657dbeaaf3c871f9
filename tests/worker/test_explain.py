"""Emotions and aspect spans decoded from model outputs: thresholds, B/I runs, and offsets that
point at the span text whatever the script (emoji, combining marks, right-to-left)."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer

from worker.explain import AspectTags, EmotionLabels, top_aspect, top_emotion
from worker.tokenizer import default_tokenizer_path

TAGS = ("O", "B-POS", "I-POS", "B-NEG", "I-NEG", "B-NEU", "I-NEU")
TOK = Tokenizer.from_file(str(default_tokenizer_path()))
TOK.no_padding()


def tagged(text: str, words: dict[str, str], p: float = 0.9):
    """Tokenise `text`; give the wordpieces of each word in `words` its tag with probability
    `p` (the rest O)."""
    enc = TOK.encode(text)
    probs = np.full((len(enc.ids), len(TAGS)), (1 - p) / (len(TAGS) - 1), np.float32)
    probs[:, 0] = p
    for i, (a, b) in enumerate(enc.offsets):
        word = next((w for w in words if b > a and text[a:b] in w), None)
        if word is not None:
            probs[i] = (1 - p) / (len(TAGS) - 1)
            probs[i, TAGS.index(words[word])] = p
    return probs, enc.offsets


def test_emotions_above_their_thresholds_most_probable_first():
    labels = EmotionLabels(("anger", "joy", "sadness"), (0.5, 0.3, 0.2))
    out = labels.decode(np.array([0.6, 0.1, 0.9], np.float32))
    assert out["labels"] == ["sadness", "anger"]
    assert out["probs"] == {"anger": 0.6, "joy": 0.1, "sadness": 0.9}
    assert top_emotion(out) == "sadness"
    assert top_emotion(labels.decode(np.zeros(3, np.float32))) is None


@pytest.mark.parametrize(("text", "words", "want"), [
    ("The refund was late", {"refund": "B-NEG"}, [("refund", "negative")]),
    ("The customer service is great", {"customer": "B-POS", "service": "I-POS"},
     [("customer service", "positive")]),
    ("The refund 😡 was late, the app 👍🏽 fine", {"refund": "B-NEG", "app": "B-POS"},
     [("refund", "negative"), ("app", "positive")]),
    ("cafe\u0301 service bad", {"cafe": "B-NEG"}, [("cafe\u0301", "negative")]),
    ("الخدمة سيئة جدا", {"الخدمة": "B-NEG"}, [("الخدمة", "negative")]),
    ("שירות גרוע מאוד", {"שירות": "B-NEG"}, [("שירות", "negative")]),
    ("My résumé upload failed", {"résumé": "B-NEG", "upload": "I-NEG"},
     [("résumé upload", "negative")]),
])
def test_every_span_points_at_its_text(text, words, want):
    probs, offsets = tagged(text, words)
    spans = AspectTags(TAGS, 0.5).spans(probs, offsets, text)
    assert [(s["text"], s["polarity"]) for s in spans] == want
    for s in spans:
        assert text[s["start"]:s["end"]] == s["text"]
        assert 0 < s["confidence"] <= 1


def test_a_span_keeps_the_marks_of_its_last_character():
    text = "👍🏽 ok"  # the skin-tone modifier belongs to the thumb
    enc = TOK.encode(text)
    probs = np.zeros((len(enc.ids), len(TAGS)), np.float32)
    probs[:, 0] = 1
    probs[1] = 0
    probs[1, TAGS.index("B-POS")] = 1
    (span,) = AspectTags(TAGS, 0.5).spans(probs, enc.offsets, text)
    assert span["text"] == "👍🏽" and (span["start"], span["end"]) == (0, 2)


def test_low_confidence_terms_are_left_out_and_an_i_continues_a_term():
    text = "battery life, screen keyboard"
    probs, offsets = tagged(text, {"battery": "B-NEG", "life": "I-NEG", "screen": "B-POS",
                                   "keyboard": "I-POS"})
    spans = AspectTags(TAGS, 0.5).spans(probs, offsets, text)
    assert [(s["text"], s["polarity"]) for s in spans] == [("battery life", "negative"),
                                                           ("screen keyboard", "positive")]
    probs, offsets = tagged(text, {"battery": "B-NEG"}, p=0.4)
    assert AspectTags(TAGS, 0.6).spans(probs, offsets, text) == []


def test_spans_trim_punctuation_and_never_cut_a_grapheme():
    text = "the (refund) and 👍\u200d🔥 x"
    probs, offsets = tagged(text, {"(refund)": "B-NEG"})
    (span,) = AspectTags(TAGS, 0.5).spans(probs, offsets, text)
    assert span["text"] == "refund" and text[span["start"]:span["end"]] == "refund"


def test_the_top_aspect_prefers_a_negative_one():
    aspects = [{"text": "staff", "polarity": "positive", "confidence": 0.99},
               {"text": "refund", "polarity": "negative", "confidence": 0.7}]
    assert top_aspect(aspects) == "refund"
    assert top_aspect([]) is None
