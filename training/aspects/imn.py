"""IMN (He et al., ACL 2019): interactive multi-task learning for end-to-end ABSA, on CNNs.

Shared encoder: 2 CNN layers (128 filters k=3 + 128 k=5, then 256 k=5), ReLU, dropout 0.5 after
the embedding and each CNN layer (m_s = 2). Components, as in the paper's chosen configuration
m_ae, m_as, m_ds, m_dd = 2, 0, 0, 0:
  AE  2 CNN layers; decoder on [word embedding; h_s(0); h_ae] -> {O, BA, IA}
  AS  self-attention over h_s with score_ij = (h_i W h_j) / |i - j| * P_op_j, diagonal masked;
      decoder on [h_s(0); h'_as] -> {POS, NEG, NEU}
  DS  attention pooling over h_s -> document sentiment (3);  DD  the same -> domain (2)
Message passing: T iterations of h_s(t) = ReLU(W [h_s(t-1); y_ae; y_as; y_ds; a_ds; a_dd]).

Departure: no opinion-term labels exist in our data (the paper used Wang et al.'s), so AE has
3 labels, not 5, and P_op (the predicted opinion probability in the AS attention) is replaced by
the DS attention weight of token j, scaled to a maximum of 1 per sentence: how
sentiment-relevant DS finds the token. Without the document tasks (`docs=False`, IMN-d) P_op = 1.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

AE_TAGS = ("O", "BA", "IA")


class Conv(nn.Module):
    """Same-length 1D convolutions over [B, L, C] (several kernel sizes concatenated), ReLU,
    padding positions zeroed, dropout."""

    def __init__(self, d_in: int, filters: list[tuple[int, int]], dropout: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(d_in, n, k, padding=k // 2) for n, k in filters)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        xt = x.transpose(1, 2)
        h = torch.cat([torch.relu(c(xt)) for c in self.convs], dim=1).transpose(1, 2)
        return self.drop(h * mask.unsqueeze(-1))


def attention_pool(h: torch.Tensor, mask: torch.Tensor, att: nn.Linear):
    a = att(h).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(-1)
    return (a.unsqueeze(-1) * h).sum(1), a


class IMN(nn.Module):
    def __init__(self, embeddings: np.ndarray, iterations: int = 2, docs: bool = True,
                 dropout: float = 0.5, width: int = 256) -> None:
        super().__init__()
        e = embeddings.shape[1]
        self.iterations, self.docs = iterations, docs
        self.emb = nn.Embedding.from_pretrained(torch.from_numpy(embeddings), freeze=True)
        self.emb_drop = nn.Dropout(dropout)
        half = width // 2
        self.shared = nn.ModuleList([Conv(e, [(half, 3), (half, 5)], dropout),
                                     Conv(width, [(width, 5)], dropout)])
        self.ae_enc = nn.ModuleList([Conv(width, [(width, 5)], dropout) for _ in range(2)])
        self.ae_out = nn.Linear(e + 2 * width, len(AE_TAGS))
        self.as_w = nn.Linear(width, width, bias=False)
        self.as_out = nn.Linear(2 * width, 3)
        self.ds_att, self.ds_out = nn.Linear(width, 1), nn.Linear(width, 3)
        self.dd_att, self.dd_out = nn.Linear(width, 1), nn.Linear(width, 2)
        extra = 3 + 3 + (3 + 1 + 1 if docs else 0)
        self.reenc = nn.Linear(width + extra, width)

    def groups(self) -> dict[str, list[nn.Parameter]]:
        """theta_s, theta_ae, theta_as, theta_re, theta_ds, theta_dd (trainable only)."""
        mods = {"s": self.shared, "ae": [self.ae_enc, self.ae_out],
                "as": [self.as_w, self.as_out], "re": self.reenc,
                "ds": [self.ds_att, self.ds_out], "dd": [self.dd_att, self.dd_out]}
        out = {}
        for name, m in mods.items():
            ms = m if isinstance(m, list) else [m]
            out[name] = [p for mod in ms for p in mod.parameters() if p.requires_grad]
        return out

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.emb_drop(self.emb(ids))
        h = x
        for layer in self.shared:
            h = layer(h, mask)
        return x, h

    def doc_tasks(self, h: torch.Tensor, mask: torch.Tensor):
        ds_vec, a_ds = attention_pool(h, mask, self.ds_att)
        dd_vec, a_dd = attention_pool(h, mask, self.dd_att)
        return self.ds_out(ds_vec), a_ds, self.dd_out(dd_vec), a_dd

    def documents(self, ids: torch.Tensor, mask: torch.Tensor):
        """DS and DD logits (no message passing on document-level instances)."""
        _, h = self.encode(ids, mask)
        ds, _, dd, _ = self.doc_tasks(h, mask)
        return ds, dd

    def aspect_tasks(self, x, h0, h, mask, p_op):
        hae = h
        for layer in self.ae_enc:
            hae = layer(hae, mask)
        y_ae = self.ae_out(torch.cat([x, h0, hae], -1))
        n = h.shape[1]
        pos = torch.arange(n, device=h.device)
        dist = (pos[:, None] - pos[None, :]).abs().clamp(min=1).float()
        score = (self.as_w(h) @ h.transpose(1, 2)) / dist * p_op.unsqueeze(1)
        eye = torch.eye(n, dtype=torch.bool, device=h.device)
        score = score.masked_fill(eye | ~mask[:, None, :], float("-inf"))
        att = torch.nan_to_num(score.softmax(-1))  # a one-token sentence has no context
        y_as = self.as_out(torch.cat([h0, att @ h], -1))
        return y_ae, y_as

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """AE logits [B, L, 3] and AS logits [B, L, 3] after T message-passing iterations."""
        x, h0 = self.encode(ids, mask)
        h = h0
        for t in range(self.iterations + 1):
            if self.docs:
                ds, a_ds, _, a_dd = self.doc_tasks(h, mask)
                p_op = a_ds / a_ds.amax(-1, keepdim=True)
            else:
                p_op = mask.float()
            y_ae, y_as = self.aspect_tasks(x, h0, h, mask, p_op)
            if t == self.iterations:
                return y_ae, y_as
            msgs = [h, y_ae.softmax(-1), y_as.softmax(-1)]
            if self.docs:
                msgs += [ds.softmax(-1).unsqueeze(1).expand(-1, h.shape[1], -1),
                         a_ds.unsqueeze(-1), a_dd.unsqueeze(-1)]
            h = torch.relu(self.reenc(torch.cat(msgs, -1))) * mask.unsqueeze(-1)
        raise AssertionError("unreachable")


def decode(ae: np.ndarray, pol: np.ndarray, n: int) -> list[tuple[int, int, str]]:
    """Terms from AE argmax labels (BA starts, IA continues; IA after O starts a term too);
    polarity = the AS prediction on the term's first token, as in the paper."""
    out, start = [], -1
    labels = [*ae[:n].tolist(), 0]
    for i, lab in enumerate(labels):
        if start >= 0 and lab != 2:
            out.append((start, i, ("POS", "NEG", "NEU")[int(pol[start])]))
            start = -1
        if lab in (1, 2) and start < 0:
            start = i
    return out
