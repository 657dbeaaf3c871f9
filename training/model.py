"""The served model: MiniLM-L6 fine-tuned end to end through a recurrent head over turns.

Turn t of a conversation, reading turns <= t only:
  u_t = mean-pooled MiniLM of utterance t alone (one encoder row per turn: the "encoder" model)
  h_t = GRU([u_t; is_customer_t], h_{t-1})                     (the "step" model, state h)
  three heads on h_t, each its own label space (multi-task, never merged):
    satisfaction  USS 3 classes from the mean rating (dissatisfied / neutral / satisfied)
    levels        USS 5 levels (the annotators' majority, 1..5)
    sentiment     negative / neutral / positive, from MELD, SemEval-2016 tweets and GoEmotions

The embeddings and the lower `cfg.frozen_layers` transformer layers stay frozen (their outputs
can be cached), the upper layers are trained. A turn costs one encoder row and one GRU step,
whatever the turn index; the carried state is h alone (256 floats).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers import BertConfig, BertModel
from transformers.utils import logging as hf_logging

HEADS = {"satisfaction": 3, "levels": 5, "sentiment": 3}


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = 384
    hidden: int = 256
    frozen_layers: int = 3  # embeddings + this many lower layers are not trained
    dropout: float = 0.2


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, L] 0/1 -> [B, 1, 1, L] additive attention mask (0 keep, very negative drop)."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-6)


class ChatModel(nn.Module):
    def __init__(self, cfg: ModelConfig, bert_config: BertConfig) -> None:
        super().__init__()
        self.cfg = cfg
        bert_config._attn_implementation = "eager"  # the split forward passes its own mask
        self.bert = BertModel(bert_config, add_pooling_layer=False)
        self.gru = nn.GRU(cfg.embed_dim + 1, cfg.hidden, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.heads = nn.ModuleDict({n: nn.Linear(cfg.hidden, c) for n, c in HEADS.items()})
        for p in self.frozen_parameters():
            p.requires_grad_(False)

    def frozen_parameters(self):
        yield from self.bert.embeddings.parameters()
        for layer in self.bert.encoder.layer[: self.cfg.frozen_layers]:
            yield from layer.parameters()

    @torch.no_grad()
    def lower(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden states after the frozen layers [B, L, E] (cacheable: never trained)."""
        h = self.bert.embeddings(input_ids=ids)
        ext = additive_mask(mask, h.dtype)
        for layer in self.bert.encoder.layer[: self.cfg.frozen_layers]:
            h = layer(h, attention_mask=ext)
        return h

    def upper_tokens(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The trained layers: [B, L, E] -> token states [B, L, E] (the served encoder's
        token-level output, read by the emotion and aspect models)."""
        ext = additive_mask(mask, hidden.dtype)
        for layer in self.bert.encoder.layer[self.cfg.frozen_layers:]:
            hidden = layer(hidden, attention_mask=ext)
        return hidden

    def upper(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The trained layers and mean pooling: [B, L, E] -> utterance vectors [B, E]."""
        return mean_pool(self.upper_tokens(hidden, mask), mask)

    def encode(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.upper(self.lower(ids, mask), mask)

    @torch.no_grad()
    def tokens(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states of the whole (fine-tuned) encoder [B, L, E]."""
        return self.upper_tokens(self.lower(ids, mask), mask)

    def dialogue(self, utt: torch.Tensor, is_customer: torch.Tensor) -> dict[str, torch.Tensor]:
        """utt [B, T, E], is_customer [B, T, 1] -> logits per head, each [B, T, C]."""
        h, _ = self.gru(torch.cat([self.drop(utt), is_customer], dim=-1))
        h = self.drop(h)
        return {n: head(h) for n, head in self.heads.items()}


def _is_frozen(key: str, cfg: ModelConfig) -> bool:
    if key.startswith("bert.embeddings."):
        return True
    if key.startswith("bert.encoder.layer."):
        return int(key.split(".")[3]) < cfg.frozen_layers
    return False


class Encoder(nn.Module):
    """What Triton serves as "encoder": token ids -> the fine-tuned utterance vector, and the
    token states it pools (read by the emotion and aspect models)."""

    def __init__(self, model: ChatModel) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        tokens = m.upper_tokens(m.lower(input_ids, attention_mask), attention_mask)
        return mean_pool(tokens, attention_mask), tokens


class Step(nn.Module):
    """What Triton serves as the step model: one turn for a batch of conversations, GRU state h
    in and out; calibrated probabilities (a temperature per head, fitted on validation)."""

    def __init__(self, model: ChatModel, temperatures: dict[str, float]) -> None:
        super().__init__()
        self.model = model.eval()
        self.register_buffer("temps", torch.tensor([temperatures.get(n, 1.0) for n in HEADS]))

    def forward(self, embedding: torch.Tensor, is_customer: torch.Tensor, h: torch.Tensor):
        m = self.model
        x = torch.cat([embedding, is_customer], dim=-1).unsqueeze(1)
        _, h1 = m.gru(x, h.unsqueeze(0))
        h1 = h1.squeeze(0)
        probs = [torch.softmax(head(h1) / self.temps[i], dim=-1)
                 for i, head in enumerate(m.heads.values())]
        return (*probs, h1)


def save(path, model: ChatModel, extra: dict, half: bool = False,
         cfg: ModelConfig | None = None) -> None:
    """Keep the trained weights only (fp16 if `half`); frozen ones come from the base model.
    `cfg` (default: the model's) is recorded and says which layers count as frozen: a step row
    trained over a fine-tuned encoder passes the encoder's, so its trained layers are kept."""
    cfg = cfg or model.cfg
    state = {k: (v.half() if half and v.is_floating_point() else v).cpu()
             for k, v in model.state_dict().items() if not _is_frozen(k, cfg)}
    torch.save({"config": asdict(cfg), "state": state, **extra}, path)


def encoder_digest(path) -> str:
    """A short hash of a checkpoint's trained encoder weights: heads trained on its token
    states (emotions, aspects) record it, so a new encoder cannot silently reuse them."""
    state = torch.load(path, map_location="cpu", weights_only=False)["state"]
    h = hashlib.sha1()
    for k in sorted(k for k in state if k.startswith("bert.")):
        h.update(k.encode() + state[k].float().numpy().tobytes())
    return h.hexdigest()[:12]


def load(path, bert_dir) -> tuple[ChatModel, dict]:
    """A checkpoint over the base MiniLM in `bert_dir` (its frozen weights)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    hf_logging.set_verbosity_error()  # the unused pooler's load report is noise
    base = BertModel.from_pretrained(str(bert_dir), local_files_only=True,
                                     add_pooling_layer=False)
    model = ChatModel(ModelConfig(**ckpt.pop("config")), base.config)
    model.bert.load_state_dict(base.state_dict())
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt.pop("state").items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(_is_frozen(k, model.cfg) for k in missing), missing
    return model.eval(), ckpt
