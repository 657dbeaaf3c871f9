"""The served design's context model (GRU(256) over [utterance vector; is_customer], heads on its
state; training/model.py ChatModel.gru has the same shape, so its weights transfer) and the two
pre-training objectives of the study.

generative  TL-ERC's objective (paper 001, HRED): from the context state h_t a GRU decoder
            generates the wordpieces of utterance t+1 (teacher forcing; the most frequent
            wordpieces of the corpus, the rest as one unknown id).
retrieval   a cheaper causal objective: h_t picks the vector of utterance t+1 among the batch's
            next utterances (InfoNCE, cosine / 0.05).
Both read turns <= t only, as serving does; only the GRU is transferred.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

EMBED, HIDDEN = 384, 256
PAD, BOS, EOS, UNK = 0, 1, 2, 3


class Context(nn.Module):
    def __init__(self, heads: dict[str, int], dropout: float = 0.2) -> None:
        super().__init__()
        self.gru = nn.GRU(EMBED + 1, HIDDEN, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({n: nn.Linear(HIDDEN, c) for n, c in heads.items()})

    def states(self, x: torch.Tensor, cust: torch.Tensor) -> torch.Tensor:
        h, _ = self.gru(torch.cat([self.drop(x), cust], dim=-1))
        return self.drop(h)

    def forward(self, x: torch.Tensor, cust: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.states(x, cust)
        return {n: head(h) for n, head in self.heads.items()}


class Vocabulary:
    """The `size` most frequent wordpieces of the pre-training texts -> ids 4.. (PAD, BOS, EOS,
    UNK first)."""

    def __init__(self, token_lists: list[list[int]], size: int) -> None:
        counts = np.bincount(np.concatenate([np.array(t, np.int64) for t in token_lists]))
        top = np.argsort(-counts)[:size]
        self.map = np.full(len(counts), UNK, np.int64)
        self.map[top] = np.arange(4, 4 + len(top))
        self.size = 4 + len(top)

    def ids(self, tokens: list[int], max_len: int) -> list[int]:
        return [int(self.map[t]) if t < len(self.map) else UNK for t in tokens[:max_len]] + [EOS]


class Generative(nn.Module):
    """HRED decoder: h_t -> the next utterance's wordpieces."""

    def __init__(self, vocab: int, dim: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, padding_idx=PAD)
        self.init = nn.Linear(HIDDEN, HIDDEN)
        self.gru = nn.GRU(dim, HIDDEN, batch_first=True)
        self.out = nn.Linear(HIDDEN, vocab)

    def loss(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """h [N, H], targets [N, L] (EOS-terminated, PAD after) -> mean token cross-entropy."""
        inp = torch.cat([torch.full_like(targets[:, :1], BOS), targets[:, :-1]], dim=1)
        out, _ = self.gru(self.embed(inp), torch.tanh(self.init(h)).unsqueeze(0))
        return nn.functional.cross_entropy(self.out(out).transpose(1, 2), targets,
                                           ignore_index=PAD)


class Retrieval(nn.Module):
    """h_t against the next utterances' vectors of the batch."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        self.ctx = nn.Linear(HIDDEN, HIDDEN)
        self.utt = nn.Linear(EMBED, HIDDEN)
        self.temperature = temperature

    def loss(self, h: torch.Tensor, nxt: torch.Tensor) -> torch.Tensor:
        a = nn.functional.normalize(self.ctx(h), dim=-1)
        b = nn.functional.normalize(self.utt(nxt), dim=-1)
        logits = a @ b.T / self.temperature
        return nn.functional.cross_entropy(logits, torch.arange(len(h)))
