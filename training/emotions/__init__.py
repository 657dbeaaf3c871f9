"""Multi-label emotions (SemEval-2018 E-c, 11 labels) per turn: DATN (Yu et al., EMNLP 2018,
shared/papers/003) on GloVe, and the same dual-attention head over the served encoder's token
states, which is what Triton serves as "emotions" (export.py).

    python -m training.emotions   # experiments -> reports/emotions/eval.{md,json}
"""
