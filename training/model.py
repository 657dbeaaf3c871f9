"""The first served model: a causal recurrent head over turn embeddings.

Each turn's sentence embedding (plus a customer/agent flag) goes through a projection and a
unidirectional GRU over the turns of the conversation; the class scores of turn t read only the
GRU state after turns <= t. Served as one step: (embedding, is_customer, state) -> (probs, state).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class HeadConfig:
    embed_dim: int = 384
    proj_dim: int = 128
    hidden: int = 128
    classes: int = 5
    dropout: float = 0.3


class TurnHead(nn.Module):
    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Sequential(nn.Linear(cfg.embed_dim + 1, cfg.proj_dim), nn.ReLU())
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.proj_dim, cfg.hidden, batch_first=True)
        self.out = nn.Linear(cfg.hidden + cfg.proj_dim, cfg.classes)

    def forward(
        self, emb: torch.Tensor, is_customer: torch.Tensor, h0: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """emb [B,T,E], is_customer [B,T,1], h0 [B,H] -> logits [B,T,C], last state [B,H]."""
        x = self.drop(self.proj(torch.cat([emb, is_customer], dim=-1)))
        hs, h_last = self.gru(x, None if h0 is None else h0.unsqueeze(0).contiguous())
        logits = self.out(self.drop(torch.cat([hs, x], dim=-1)))
        return logits, h_last.squeeze(0)


class TurnHeadStep(nn.Module):
    """One turn for a batch of conversations, state in and out: what Triton serves."""

    def __init__(self, head: TurnHead) -> None:
        super().__init__()
        self.head = head

    def forward(
        self, embedding: torch.Tensor, is_customer: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits, h = self.head(embedding.unsqueeze(1), is_customer.unsqueeze(1), state)
        return torch.softmax(logits[:, 0], dim=-1), h


def save_checkpoint(path, head: TurnHead, extra: dict) -> None:
    torch.save({"config": asdict(head.cfg), "state_dict": head.state_dict(), **extra}, path)


def load_checkpoint(path) -> TurnHead:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    head = TurnHead(HeadConfig(**ckpt["config"]))
    head.load_state_dict(ckpt["state_dict"])
    return head.eval()
