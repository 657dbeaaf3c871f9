"""Heads over the served MiniLM encoder's token states [B, L, 384] -> 7 tag probabilities.

tagger       unified tagger: Linear 384->256, GELU, a masked 1D convolution (k=3) over the
             wordpieces, GELU, Linear -> {O, B-POS, I-POS, B-NEG, I-NEG, B-NEU, I-NEU}
interactive  IMN's aspect-level part on these states: shared h0 = ReLU(Linear), AE (a conv
             layer, decoder on [h0; h_ae]) -> {O, BA, IA}; AS (self-attention, score
             (h_i W h_j) / |i - j|, diagonal masked; decoder on [h0; h'_as]) -> {POS, NEG, NEU};
             T = 2 message-passing iterations re-encoding [h; y_ae; y_as]. Its 7 tag
             probabilities: O = p_O, B-x = p_BA p_x, I-x = p_IA p_x.
Both keep padded positions out of every real position's output (masks, no -inf: ONNX-safe).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

NEG = -1e4


@dataclass(frozen=True)
class HeadConfig:
    kind: str = "tagger"  # "tagger" | "interactive"
    dim: int = 384
    hidden: int = 256
    dropout: float = 0.1
    iterations: int = 2


class MaskedConv(nn.Module):
    def __init__(self, d_in: int, d_out: int, k: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv1d(d_in, d_out, k, padding=k // 2)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return self.conv((x * m).transpose(1, 2)).transpose(1, 2)


class Tagger(nn.Module):
    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        self.inp = nn.Linear(cfg.dim, cfg.hidden)
        self.conv = MaskedConv(cfg.hidden, cfg.hidden)
        self.out = nn.Linear(cfg.hidden, 7)
        self.drop = nn.Dropout(cfg.dropout)
        self.act = nn.GELU()

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        m = mask.unsqueeze(-1).to(tokens.dtype)
        h = self.drop(self.act(self.inp(self.drop(tokens))))
        h = self.drop(self.act(self.conv(h, m)))
        logits = self.out(h)
        return {"tags": logits, "probs": logits.softmax(-1)}


class Interactive(nn.Module):
    def __init__(self, cfg: HeadConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.iterations = cfg.iterations
        self.inp = nn.Linear(cfg.dim, d)
        self.ae_conv = MaskedConv(d, d)
        self.ae_out = nn.Linear(2 * d, 3)
        self.as_w = nn.Linear(d, d, bias=False)
        self.as_out = nn.Linear(2 * d, 3)
        self.reenc = nn.Linear(d + 6, d)
        self.drop = nn.Dropout(cfg.dropout)

    def components(self, h0, h, m, allowed, dist):
        hae = self.drop(torch.relu(self.ae_conv(h, m)))
        y_ae = self.ae_out(torch.cat([h0, hae], -1))
        score = (self.as_w(h) @ h.transpose(1, 2)) / dist
        att = score.masked_fill(~allowed, NEG).softmax(-1) * allowed.to(h.dtype)
        y_as = self.as_out(torch.cat([h0, att @ h], -1))
        return y_ae, y_as

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        m = mask.unsqueeze(-1).to(tokens.dtype)
        h0 = self.drop(torch.relu(self.inp(self.drop(tokens)))) * m
        n = tokens.shape[1]
        pos = torch.arange(n, device=tokens.device)
        gap = (pos[:, None] - pos[None, :]).abs()
        dist = gap.clamp(min=1).to(tokens.dtype)
        valid = mask.bool()
        allowed = (gap != 0)[None] & valid[:, None, :] & valid[:, :, None]
        h = h0
        for t in range(self.iterations + 1):
            y_ae, y_as = self.components(h0, h, m, allowed, dist)
            if t == self.iterations:
                break
            h = torch.relu(self.reenc(torch.cat([h, y_ae.softmax(-1), y_as.softmax(-1)], -1))) * m
        p_ae, p_as = y_ae.softmax(-1), y_as.softmax(-1)
        b, i = p_ae[..., 1:2] * p_as, p_ae[..., 2:3] * p_as  # [.., 3] each, POS NEG NEU
        probs = torch.stack([p_ae[..., 0], b[..., 0], i[..., 0], b[..., 1], i[..., 1],
                             b[..., 2], i[..., 2]], -1)
        return {"ae": y_ae, "as": y_as, "probs": probs}


def build(cfg: HeadConfig) -> nn.Module:
    return {"tagger": Tagger, "interactive": Interactive}[cfg.kind](cfg)


class Served(nn.Module):
    """What Triton serves: token states + mask -> per-wordpiece tag probabilities [B, L, 7]."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head.eval()

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(tokens, attention_mask)["probs"]


def save(path, head: nn.Module, cfg: HeadConfig, extra: dict) -> None:
    state = {k: v.half() for k, v in head.state_dict().items()}
    torch.save({"config": asdict(cfg), "state": state, **extra}, path)


def load(path) -> tuple[nn.Module, HeadConfig, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg = HeadConfig(**ckpt.pop("config"))
    head = build(cfg)
    head.load_state_dict({k: v.float() for k, v in ckpt.pop("state").items()})
    return head.eval(), cfg, ckpt
