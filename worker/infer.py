"""Triton client: tokenise, bucket by length, call the encoder and the head over async gRPC;
check the served models against what the worker sends before it starts."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import structlog
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from worker import metrics
from worker.bow import BagOfWords
from worker.explain import AspectTags, EmotionLabels
from worker.tokenizer import Bucket, TurnTokenizer

log = structlog.get_logger(__name__)

# name -> (datatype, shape without the batch axis); -1 is a dynamic axis
ENCODER_IO = {
    "inputs": {"input_ids": ("INT64", (-1,)), "attention_mask": ("INT64", (-1,))},
    "outputs": {"embedding": ("FP32", (384,))},
}
# the step model: these per-turn tensors, plus state tensors X in and X_out out (any number)
STEP_IO = {
    "inputs": {"embedding": ("FP32", (384,)), "is_customer": ("FP32", (1,)),
               "turn_bow": ("FP32", (-1,))},
    "outputs": {"probs": ("FP32", (5,)), "satisfaction": ("FP32", (3,)),
                "sentiment": ("FP32", (3,)), "topic_words": ("INT64", (-1,))},
}
# the explaining models read the encoder's token states (one encoder pass for all models)
TOKENS_IO = {"inputs": {}, "outputs": {"tokens": ("FP32", (-1, 384))}}
EMOTION_IO = {"inputs": {"tokens": ("FP32", (-1, 384)), "attention_mask": ("INT64", (-1,))},
              "outputs": {"emotion_probs": ("FP32", (-1,))}}
ASPECT_IO = {"inputs": {"tokens": ("FP32", (-1, 384)), "attention_mask": ("INT64", (-1,))},
             "outputs": {"aspect_tags": ("FP32", (-1, -1))}}
DTYPES = {"FP32": np.float32, "INT64": np.int64}
Explanation = tuple[dict | None, list | None]  # (emotions, aspects) of one turn
# SINGLE_ROW_PAD: onnxruntime on CPU computes a batch of one row on another kernel path (GEMV)
# than a batch of two or more, and the last bits differ (1.2e-7 on an embedding); batches of
# 2..128 rows, and any padding, give identical bits. A turn recomputed after a crash in another
# batch must give an identical event, so a one-row request is sent as two copies of the row.
# STEP_ROWS: the step model (its GRU) gave a row different last bits in a wave of another size
# (a kill -9 test saw a recomputed turn's sentiment differ by 1e-6), so every step request is
# padded with zero rows to the worker's max batch: one shape, the same bits for a row.


class ModelMismatch(RuntimeError):
    """The served model does not take or give what the worker sends and reads."""


@dataclass
class Encoded:
    """One encoder pass over a micro-batch: sentence embeddings in the caller's order, and the
    buckets with their token states, which the explaining models read."""

    embeddings: np.ndarray
    buckets: list[Bucket] = field(default_factory=list)
    tokens: list[np.ndarray] = field(default_factory=list)  # per bucket [rows, L, 384]


class Scorer(Protocol):
    # state tensor name -> (dtype, shape of one conversation's tensor)
    state_spec: dict[str, tuple[type, tuple[int, ...]]]
    bag_of_words: BagOfWords  # the step model's vocabulary
    explains: bool  # emotion and/or aspect models are served

    async def encode(self, texts: list[str]) -> np.ndarray: ...

    async def encode_turns(self, texts: list[str]) -> Encoded: ...

    async def explain(self, encoded: Encoded, texts: list[str]) -> list[Explanation]:
        """Emotions and aspect terms of every turn, from the encoder pass's token states."""
        ...

    async def step(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-turn inputs and state tensors in; probs (5 levels), satisfaction, sentiment,
        topic_words and the new state out (keyed by the state names)."""
        ...


@dataclass
class TritonScorer:
    """The worker's only way to the models. Stateless calls: state goes in and comes out."""

    url: str
    encoder_model: str
    head_model: str
    tokenizer: TurnTokenizer
    bucket_size: int = 32
    call_overhead_tokens: int = 64
    ssl: bool = False
    root_certificates: str | None = None
    timeout_s: float = 10.0
    state_spec: dict[str, tuple[type, tuple[int, ...]]] = field(default_factory=dict)
    bag_of_words: BagOfWords | None = None
    healthy: bool = True  # false while calls fail; the readiness view reads it
    step_rows: int = 2  # every step request is padded to this many rows (see STEP_ROWS)
    emotion_model: str = ""  # "" = not served
    aspect_model: str = ""
    emotion_labels: EmotionLabels | None = None
    aspect_tags: AspectTags | None = None

    _channel: grpcclient.InferenceServerClient | None = None

    @property
    def _client(self) -> grpcclient.InferenceServerClient:
        # created on first use, so that it binds to the event loop that runs the worker
        if self._channel is None:
            # reconnect within seconds once Triton is back (gRPC's default backoff reaches 120 s)
            self._channel = grpcclient.InferenceServerClient(
                self.url, ssl=self.ssl, root_certificates=self.root_certificates, channel_args=[
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000)])
        return self._channel

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def check_models(self, max_batch: int) -> None:
        """Refuse to start unless both models are ready and their inputs, outputs, dtypes and
        batching match what the worker sends (the Morpheus habit)."""
        await self._check(self.encoder_model, ENCODER_IO, max_batch)
        meta, config = await self._check(self.head_model, STEP_IO, max_batch)
        self.state_spec = step_state(self.head_model, meta)
        try:
            vocabulary = json.loads(config["parameters"]["vocabulary"]["string_value"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelMismatch(f"{self.head_model}: no vocabulary parameter") from exc
        width = {t["name"]: int(t["shape"][-1]) for t in meta["inputs"]}["turn_bow"]
        if len(vocabulary) != width:
            raise ModelMismatch(f"{self.head_model}: {len(vocabulary)} words, turn_bow {width}")
        self.bag_of_words = BagOfWords(vocabulary)
        self.step_rows = max_batch
        if self.emotion_model or self.aspect_model:
            await self._check(self.encoder_model, TOKENS_IO, max_batch)
        if self.emotion_model:
            _, config = await self._check(self.emotion_model, EMOTION_IO, max_batch)
            names, thresholds = parameters(self.emotion_model, config, "labels", "thresholds")
            self.emotion_labels = EmotionLabels(tuple(names),
                                                tuple(float(t) for t in thresholds))
            if len(self.emotion_labels.names) != len(self.emotion_labels.thresholds):
                raise ModelMismatch(f"{self.emotion_model}: labels and thresholds differ")
        if self.aspect_model:
            _, config = await self._check(self.aspect_model, ASPECT_IO, max_batch)
            tags, (floor,) = parameters(self.aspect_model, config, "tags", "min_confidence")
            self.aspect_tags = AspectTags(tuple(tags), float(floor))

    @property
    def explains(self) -> bool:
        return self.emotion_labels is not None or self.aspect_tags is not None

    async def _check(self, name: str, spec: dict, max_batch: int) -> tuple[dict, dict]:
        if not await self._client.is_model_ready(name):
            raise ModelMismatch(f"model {name!r} is not ready")
        meta = await self._client.get_model_metadata(name, as_json=True)
        config = (await self._client.get_model_config(name, as_json=True))["config"]
        served_max = int(config.get("max_batch_size", 0))
        if served_max < 1:
            raise ModelMismatch(f"{name}: batching is off (max_batch_size {served_max})")
        for kind in ("inputs", "outputs"):
            got = {t["name"]: (t["datatype"], tuple(int(d) for d in t["shape"][1:]))
                   for t in meta[kind]}
            for tname, (dtype, shape) in spec[kind].items():
                if tname not in got:
                    raise ModelMismatch(f"{name}: no {kind[:-1]} {tname!r}; has {list(got)}")
                gdtype, gshape = got[tname]
                fits = len(gshape) == len(shape) and all(
                    w == -1 or g == w for g, w in zip(gshape, shape, strict=True))
                if gdtype != dtype or not fits:
                    raise ModelMismatch(f"{name}.{tname}: served {gdtype}{list(gshape)}, "
                                        f"worker uses {dtype}{list(shape)}")
        log.info("model_checked", model=name, max_batch_size=served_max, wanted=max_batch)
        return meta, config

    async def _infer(self, model: str, inputs: dict[str, np.ndarray],
                     outputs: list[str]) -> list[np.ndarray]:
        rows = len(next(iter(inputs.values())))
        if rows == 1:  # see SINGLE_ROW_PAD
            inputs = {name: np.repeat(arr, 2, axis=0) for name, arr in inputs.items()}
        tensors = []
        for name, arr in inputs.items():
            t = grpcclient.InferInput(name, list(arr.shape), "INT64" if arr.dtype == np.int64
                                      else "FP32")
            t.set_data_from_numpy(arr)
            tensors.append(t)
        try:
            with metrics.TRITON_SECONDS.labels(model).time():
                result = await self._client.infer(
                    model, tensors,
                    outputs=[grpcclient.InferRequestedOutput(n) for n in outputs],
                    client_timeout=self.timeout_s)
        except Exception:
            self.healthy = False
            raise
        self.healthy = True
        return [result.as_numpy(n)[:rows] for n in outputs]

    async def encode(self, texts: list[str]) -> np.ndarray:
        """Sentence embeddings of `texts` in order (no token states)."""
        return (await self._encode(texts, tokens=False)).embeddings

    async def encode_turns(self, texts: list[str]) -> Encoded:
        """As `encode`, keeping the buckets and, when explaining models are served, the token
        states of the same encoder call."""
        return await self._encode(texts, tokens=self.explains)

    async def _encode(self, texts: list[str], tokens: bool) -> Encoded:
        """Buckets of similar length, sent concurrently; embeddings put back in `texts` order."""
        buckets = self.tokenizer.buckets(texts, self.bucket_size, self.call_overhead_tokens)
        outputs = ["embedding", "tokens"] if tokens else ["embedding"]
        results = await asyncio.gather(*(
            self._infer(self.encoder_model,
                        {"input_ids": b.input_ids, "attention_mask": b.attention_mask},
                        outputs) for b in buckets))
        out = np.empty((len(texts), results[0][0].shape[1]), dtype=np.float32)
        for bucket, res in zip(buckets, results, strict=True):
            out[bucket.rows] = res[0]
        return Encoded(out, buckets, [res[1] for res in results] if tokens else [])

    async def explain(self, encoded: Encoded, texts: list[str]) -> list[Explanation]:
        """Both explaining models on every bucket, all calls at once; decoded per turn."""
        calls = []
        for bucket, tokens in zip(encoded.buckets, encoded.tokens, strict=True):
            inputs = {"tokens": tokens, "attention_mask": bucket.attention_mask}
            if self.emotion_labels is not None:
                calls.append(self._infer(self.emotion_model, inputs, ["emotion_probs"]))
            if self.aspect_tags is not None:
                calls.append(self._infer(self.aspect_model, inputs, ["aspect_tags"]))
        results = iter(await asyncio.gather(*calls))
        out: list[Explanation] = [(None, None)] * len(texts)
        for bucket in encoded.buckets:
            emotions = next(results)[0] if self.emotion_labels is not None else None
            tags = next(results)[0] if self.aspect_tags is not None else None
            for r, row in enumerate(bucket.rows):
                out[row] = (
                    None if emotions is None else self.emotion_labels.decode(emotions[r]),
                    None if tags is None else self.aspect_tags.spans(
                        tags[r], bucket.offsets[r], texts[row]))
        return out

    async def step(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [*STEP_IO["outputs"], *(f"{k}_out" for k in self.state_spec)]
        rows = len(inputs["embedding"])
        if rows < self.step_rows:  # see STEP_ROWS
            inputs = {n: np.concatenate([a, np.zeros((self.step_rows - rows, *a.shape[1:]),
                                                     a.dtype)]) for n, a in inputs.items()}
        outs = [out[:rows] for out in await self._infer(self.head_model, inputs, names)]
        return {name.removesuffix("_out"): out for name, out in zip(names, outs, strict=True)}


def parameters(model: str, config: dict, *keys: str) -> list[list[str]]:
    """List parameters of a model's config.pbtxt: a JSON list, or comma-separated values."""
    out = []
    for k in keys:
        try:
            raw = config["parameters"][k]["string_value"].strip()
        except (KeyError, TypeError) as exc:
            raise ModelMismatch(f"{model}: config lacks parameter {k!r}") from exc
        try:
            value = json.loads(raw) if raw.startswith("[") else raw.split(",")
        except ValueError as exc:
            raise ModelMismatch(f"{model}: parameter {k!r} is not a list") from exc
        out.append([str(v).strip() for v in value])
    return out


def step_state(name: str, meta: dict) -> dict[str, tuple[type, tuple[int, ...]]]:
    """The step model's state tensors: every input X besides the per-turn ones, which must come
    back as output X_out with the same type and shape."""
    ins = {t["name"]: (t["datatype"], tuple(int(d) for d in t["shape"][1:]))
           for t in meta["inputs"]}
    outs = {t["name"]: (t["datatype"], tuple(int(d) for d in t["shape"][1:]))
            for t in meta["outputs"]}
    spec = {}
    for tname, (dtype, shape) in ins.items():
        if tname in STEP_IO["inputs"]:
            continue
        if outs.get(f"{tname}_out") != (dtype, shape) or dtype not in DTYPES or -1 in shape:
            raise ModelMismatch(f"{name}: state {tname} {dtype}{list(shape)} has no matching "
                                f"{tname}_out (has {outs.get(f'{tname}_out')})")
        spec[tname] = (DTYPES[dtype], shape)
    if not spec:
        raise ModelMismatch(f"{name}: no state tensors")
    return spec


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying forever: the server is away or overloaded, not the input's fault."""
    if isinstance(exc, InferenceServerException):
        status = (exc.status() or "").upper()
        return any(s in status for s in ("UNAVAILABLE", "DEADLINE", "RESOURCE_EXHAUSTED",
                                         "CANCELLED", "INTERNAL", "UNKNOWN"))
    return isinstance(exc, ConnectionError | asyncio.TimeoutError | OSError)
