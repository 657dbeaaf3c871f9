"""TML (Wang et al., AAAI 2020, paper 000): topic-aware multi-task sentiment, made causal.

Turn t, reading turns <= t only:
  u_t   utterance vector from the encoder (frozen MiniLM here, served as model "encoder")
  h_t   = LSTM(u_t, h_{t-1}, c_{t-1})                                             (Eq. 1)
  c'_t  = attention of h_t over the hidden states of the last `window` earlier turns   (Eq. 2-3)
  ĥ_t   = ReLU(W_c [h_t; c'_t] + b_c)                                               (Eq. 4)
  three NVDM topic models read the bag of words of the prefix: all turns, the customer's,
  the agent's (the paper reads the whole dialogue; live, only the prefix exists)     (Eq. 5-11)
  υ     = υ_overall ⊕ υ_customer ⊕ 0 for a customer turn, υ_overall ⊕ 0 ⊕ υ_agent for an agent's
  g     = σ(W_g [ĥ_t; υ] + b_g);  r_t = (1 - g) ⊙ ĥ_t + g ⊙ W_υ υ                     (Eq. 12-15)
  p     = softmax(W_γ r_t + b_γ)                                                    (Eq. 16)
Loss: L_main + λ (L_overall + L_customer + L_agent)                                 (Eq. 18)

`TML.forward` runs whole (padded) dialogues for training; `TMLStep` runs one turn with all
carried state as explicit tensors, which is what Triton serves. Both use the same modules, and
the bounded attention window makes a turn cost the same at turn 5 and at turn 500.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

MASKED = -1e9  # score of a memory slot that is not there (softmax weight exactly 0)


@dataclass(frozen=True)
class TMLConfig:
    embed_dim: int = 384
    hidden: int = 256  # D
    classes: int = 5
    vocab: int = 2000  # |V| of the topic models
    topics: int = 20  # K
    topic_dim: int = 100  # M
    topic_hidden: int = 256  # inference network width
    window: int = 32  # earlier turns the attention reads
    dropout: float = 0.3
    use_topics: bool = True  # False: the paper's main-task-only ablation
    use_attention: bool = True  # False: ĥ from h_t alone
    top_words: int = 5  # topic words returned per turn


class TopicModel(nn.Module):
    """NVDM-style neural topic model (Miao et al. 2017) with embedded topics (paper Eq. 5-8)."""

    def __init__(self, vocab: int, topics: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.dim = dim
        self.encode = nn.Sequential(nn.Linear(vocab, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, topics)
        self.logvar = nn.Linear(hidden, topics)
        self.theta = nn.Linear(topics, topics)  # W_θ, b_θ
        self.word_emb = nn.Parameter(torch.randn(vocab, dim) * 0.1)  # W
        self.topic_emb = nn.Parameter(torch.randn(topics, dim) * 0.1)  # Φ

    def beta(self) -> torch.Tensor:
        """Topic-word distributions [K, V]: β_k = softmax(W φ_k / √M)."""
        return torch.softmax(self.topic_emb @ self.word_emb.T / math.sqrt(self.dim), dim=-1)

    def forward(self, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """counts [..., V] -> (υ [..., M], θ [..., K], loss per document [...]).

        Samples z while training; uses the mean when not (so serving is deterministic)."""
        hidden = self.encode(torch.log1p(counts))  # log counts: prefixes grow long
        mu, logvar = self.mu(hidden), self.logvar(hidden)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        theta = torch.softmax(self.theta(z), dim=-1)
        words = theta @ self.beta()
        nll = -(counts * torch.log(words + 1e-10)).sum(-1)
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)
        return theta @ self.topic_emb, theta, nll + kl


class TML(nn.Module):
    def __init__(self, cfg: TMLConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, m = cfg.hidden, cfg.topic_dim
        self.drop = nn.Dropout(cfg.dropout)
        self.lstm = nn.LSTM(cfg.embed_dim, d, batch_first=True)
        self.w_alpha = nn.Linear(d, d, bias=False)
        self.w_c = nn.Linear(2 * d, d)
        self.topic_models = nn.ModuleList(
            TopicModel(cfg.vocab, cfg.topics, m, cfg.topic_hidden) for _ in range(3))
        self.w_g = nn.Linear(d + 3 * m, d)
        self.w_v = nn.Linear(3 * m, d, bias=False)
        self.out = nn.Linear(d, cfg.classes)

    def _context(self, h: torch.Tensor, memory: torch.Tensor, allowed: torch.Tensor):
        """Attention of queries h [B,Q,D] over memory [B,S,D] where allowed [B,Q,S]
        (Eq. 2-3); a query with no allowed slot gets a zero context."""
        if not self.cfg.use_attention:
            return torch.zeros_like(h)
        scores = self.w_alpha(h) @ memory.transpose(1, 2)
        weights = torch.softmax(scores.masked_fill(~allowed, MASKED), dim=-1) * allowed
        return weights @ memory

    def _topic_head(self, h_hat: torch.Tensor, is_customer: torch.Tensor,
                    bows: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
        """Gated fusion of ĥ with the role's topic representation (Eq. 12-15); also returns
        the topic models' losses and the overall model's θ."""
        if not self.cfg.use_topics:
            zero = h_hat.new_zeros(h_hat.shape[:-1])
            return h_hat, (zero, zero, zero), None
        (v_o, th_o, l_o), (v_c, _, l_c), (v_a, _, l_a) = (
            tm(b) for tm, b in zip(self.topic_models, bows, strict=True))
        v = torch.cat([v_o, v_c * is_customer, v_a * (1 - is_customer)], dim=-1)
        g = torch.sigmoid(self.w_g(torch.cat([h_hat, v], dim=-1)))
        return (1 - g) * h_hat + g * self.w_v(v), (l_o, l_c, l_a), th_o

    def forward(self, emb: torch.Tensor, is_customer: torch.Tensor, bow: torch.Tensor):
        """emb [B,T,E], is_customer [B,T,1], bow [B,T,V] (each turn's own counts) ->
        logits [B,T,C] and the topic losses of every prefix, three of [B,T]."""
        t = emb.shape[1]
        hs, _ = self.lstm(self.drop(emb))
        pos = torch.arange(t, device=emb.device)
        back = pos.unsqueeze(1) - pos.unsqueeze(0)  # [T,T]: t - j
        allowed = ((back >= 1) & (back <= self.cfg.window)).expand(emb.shape[0], t, t)
        ctx = self._context(hs, hs, allowed)
        h_hat = F.relu(self.w_c(torch.cat([hs, ctx], dim=-1)))
        bows = (bow.cumsum(1), (bow * is_customer).cumsum(1), (bow * (1 - is_customer)).cumsum(1))
        r, losses, _ = self._topic_head(h_hat, is_customer, bows)
        return self.out(self.drop(r)), losses


class TMLStep(nn.Module):
    """One turn for a batch of conversations; every carried tensor goes in and comes out."""

    STATE = ("h", "c", "memory", "memory_len", "bow_overall", "bow_customer", "bow_agent")

    def __init__(self, model: TML) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, embedding, is_customer, turn_bow, h, c, memory, memory_len,
                bow_overall, bow_customer, bow_agent):
        m, cfg = self.model, self.model.cfg
        _, (h1, c1) = m.lstm(embedding.unsqueeze(1), (h.unsqueeze(0), c.unsqueeze(0)))
        h1, c1 = h1.squeeze(0), c1.squeeze(0)
        slot = torch.arange(cfg.window, device=h.device).unsqueeze(0)  # newest last
        allowed = (slot >= cfg.window - memory_len).unsqueeze(1)
        ctx = m._context(h1.unsqueeze(1), memory, allowed).squeeze(1)
        h_hat = F.relu(m.w_c(torch.cat([h1, ctx], dim=-1)))
        bows = (bow_overall + turn_bow, bow_customer + turn_bow * is_customer,
                bow_agent + turn_bow * (1 - is_customer))
        r, _, theta = m._topic_head(h_hat, is_customer, bows)
        probs = torch.softmax(m.out(r), dim=-1)
        if theta is None:  # no topic models: no topic words
            words = torch.zeros(h.shape[0], cfg.top_words, dtype=torch.int64, device=h.device)
        else:
            words = torch.topk(theta @ m.topic_models[0].beta(), cfg.top_words, dim=-1).indices
        memory_out = torch.cat([memory[:, 1:], h1.unsqueeze(1)], dim=1)
        memory_len_out = torch.clamp(memory_len + 1, max=cfg.window)
        return (probs, words, h1, c1, memory_out, memory_len_out, *bows)

    def initial_state(self, batch: int) -> dict[str, torch.Tensor]:
        cfg = self.model.cfg
        zeros = {"h": (cfg.hidden,), "c": (cfg.hidden,), "memory": (cfg.window, cfg.hidden),
                 "bow_overall": (cfg.vocab,), "bow_customer": (cfg.vocab,),
                 "bow_agent": (cfg.vocab,)}
        state = {k: torch.zeros(batch, *shape) for k, shape in zeros.items()}
        state["memory_len"] = torch.zeros(batch, 1, dtype=torch.int64)
        return {k: state[k] for k in self.STATE}


def save(path, model: TML, extra: dict) -> None:
    torch.save({"config": asdict(model.cfg), "state_dict": model.state_dict(), **extra}, path)


def load(path) -> tuple[TML, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = TML(TMLConfig(**ckpt.pop("config")))
    model.load_state_dict(ckpt.pop("state_dict"))
    return model.eval(), ckpt
