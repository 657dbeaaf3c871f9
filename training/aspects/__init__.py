"""End-to-end aspect-based sentiment (issue #16, aspects): aspect spans with a polarity.

Two models, both evaluated by end-to-end F1 over (aspect span, polarity) pairs:
  imn    IMN (He et al., ACL 2019) on GloVe 50d: CNN encoder, AE/AS/DS/DD with message passing
  head   the served one: a token-level head over the served MiniLM encoder's token states

`python -m training.aspects` trains and evaluates both and writes reports/aspects/.
"""

TAGS = ("O", "B-POS", "I-POS", "B-NEG", "I-NEG", "B-NEU", "I-NEU")  # served output order
POLARITIES = ("POS", "NEG", "NEU")
