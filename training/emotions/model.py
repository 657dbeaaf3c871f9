"""DATN (Yu et al. 2018, shared/papers/003): dual attention transfer network.

Two feature spaces over the same input: a shared BiLSTM (also trained on the source sentiment
task) and a target-specific BiLSTM. Each has Bahdanau attention with the final state z as the
query (paper Eq. 1-2). DATN-1 computes the shared (sentiment) attention alpha_s first and feeds
it into the target (emotion) attention: u_t = v_t^T tanh(W_h h_t + w_a alpha_s + W_z z_t);
DATN-2 the other way round. An MLP over [H_c; H_t] gives the 11 emotion scores; a linear layer
over H_c the 3 source polarities. A cosine-similarity loss between alpha_s and alpha_t pushes
the two attentions apart. "base" is the paper's Base model: one BiLSTM + attention + MLP.

Inputs are either word ids (GloVe lookup table) or the served encoder's token states [B, L, 384].
Padding is on the right; the backward LSTM reads each row's own tokens reversed, so padded rows
give the same result as unpadded ones (and the graph exports to ONNX: gathers, no packing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

N_LABELS = 11
N_POLARITIES = 3
NEG = -1e4  # additive mask for padded positions before the softmax


@dataclass(frozen=True)
class DatnConfig:
    variant: str = "datn2"  # "base" | "datn1" | "datn2"
    input: str = "words"  # "words" (lookup table) | "states" (encoder token states)
    vocab: int = 0  # words only
    d_in: int = 50  # word vector or token-state width
    proj: int = 0  # states only: a shared linear map to this width first (0: none)
    hidden: int = 200  # per direction
    att: int = 100
    mlp: int = 200
    dropout: float = 0.5


def reverse_index(mask: torch.Tensor) -> torch.Tensor:
    """[B, L] -> index that reverses each row's first len tokens and keeps the padding."""
    lengths = mask.sum(1, keepdim=True)
    pos = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0).expand_as(mask)
    return torch.where(pos < lengths, lengths - 1 - pos, pos)


class BiLSTM(nn.Module):
    def __init__(self, d_in: int, hidden: int) -> None:
        super().__init__()
        self.fwd = nn.LSTM(d_in, hidden, batch_first=True)
        self.bwd = nn.LSTM(d_in, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, L, D] -> states h [B, L, 2H] and summary z [B, 2H] (the final state of each
        direction: forward at the last token, backward at the first)."""
        rev = reverse_index(mask).unsqueeze(-1)
        hf, _ = self.fwd(x)
        hb, _ = self.bwd(torch.gather(x, 1, rev.expand(-1, -1, x.shape[2])))
        hb = torch.gather(hb, 1, rev.expand(-1, -1, hb.shape[2]))
        last = (mask.sum(1) - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, hf.shape[2])
        z = torch.cat([torch.gather(hf, 1, last).squeeze(1), hb[:, 0]], dim=-1)
        return torch.cat([hf, hb], dim=-1), z


class Attention(nn.Module):
    """u_j = v^T tanh(W_h h_j + W_z z [+ w_a a_j]); alpha = masked softmax(u)."""

    def __init__(self, d: int, att: int, guided: bool) -> None:
        super().__init__()
        self.wh = nn.Linear(d, att)
        self.wz = nn.Linear(d, att, bias=False)
        self.wa = nn.Linear(1, att, bias=False) if guided else None
        self.v = nn.Linear(att, 1, bias=False)

    def forward(self, h: torch.Tensor, z: torch.Tensor, mask: torch.Tensor,
                other: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.wh(h) + self.wz(z).unsqueeze(1)
        if self.wa is not None:
            assert other is not None
            pre = pre + self.wa(other.unsqueeze(-1))
        u = self.v(torch.tanh(pre)).squeeze(-1) + (1.0 - mask.to(h.dtype)) * NEG
        alpha = torch.softmax(u, dim=-1)
        return (alpha.unsqueeze(-1) * h).sum(1), alpha


class Datn(nn.Module):
    def __init__(self, cfg: DatnConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.input == "words":
            self.embed: nn.Module = nn.Embedding(cfg.vocab, cfg.d_in, padding_idx=0)
            width = cfg.d_in
        else:
            self.embed = nn.Linear(cfg.d_in, cfg.proj) if cfg.proj else nn.Identity()
            width = cfg.proj or cfg.d_in
        self.drop = nn.Dropout(cfg.dropout)
        d = 2 * cfg.hidden
        self.target = BiLSTM(width, cfg.hidden)
        self.att_t = Attention(d, cfg.att, guided=cfg.variant == "datn1")
        n_spaces = 1
        if cfg.variant != "base":
            self.shared = BiLSTM(width, cfg.hidden)
            self.att_s = Attention(d, cfg.att, guided=cfg.variant == "datn2")
            self.polarity = nn.Linear(d, N_POLARITIES)
            n_spaces = 2
        self.mlp = nn.Sequential(nn.Linear(n_spaces * d, cfg.mlp), nn.Tanh(),
                                 nn.Dropout(cfg.dropout), nn.Linear(cfg.mlp, N_LABELS))

    def source_parameters(self) -> list[nn.Parameter]:
        """The "left part" of the paper's Fig. 2, updated on source (sentiment) batches."""
        mods = [self.embed, self.shared, self.att_s, self.polarity]
        return [p for m in mods for p in m.parameters()]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """-> emotion logits [B, 11]; with two spaces also polarity logits [B, 3] and both
        attentions [B, L]."""
        e = self.drop(self.embed(x))
        ht, zt = self.target(e, mask)
        ht, zt = self.drop(ht), self.drop(zt)
        if self.cfg.variant == "base":
            rep, alpha_t = self.att_t(ht, zt, mask)
            return {"emotion": self.mlp(rep), "alpha_t": alpha_t}
        hs, zs = self.shared(e, mask)
        hs, zs = self.drop(hs), self.drop(zs)
        if self.cfg.variant == "datn1":
            rep_s, alpha_s = self.att_s(hs, zs, mask)
            rep_t, alpha_t = self.att_t(ht, zt, mask, alpha_s)
        else:
            rep_t, alpha_t = self.att_t(ht, zt, mask)
            rep_s, alpha_s = self.att_s(hs, zs, mask, alpha_t)
        return {"emotion": self.mlp(torch.cat([rep_s, rep_t], dim=-1)),
                "polarity": self.polarity(rep_s), "alpha_s": alpha_s, "alpha_t": alpha_t}

    def source_forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Polarity logits of source sentences. DATN-1 needs the shared space only; DATN-2's
        shared attention reads alpha_t, so the target space runs too (not updated here)."""
        if self.cfg.variant == "datn2":
            return self.forward(x, mask)["polarity"]
        e = self.drop(self.embed(x))
        hs, zs = self.shared(e, mask)
        rep_s, _ = self.att_s(self.drop(hs), self.drop(zs), mask)
        return self.polarity(rep_s)


class Probabilities(nn.Module):
    """The served graph: token states and mask -> sigmoid emotion probabilities [B, 11]."""

    def __init__(self, model: Datn) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(tokens, attention_mask)["emotion"])


def config_dict(cfg: DatnConfig) -> dict:
    return asdict(cfg)
