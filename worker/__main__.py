"""Run the worker: `python -m worker [--flags]` (every setting also reads CHAT_<NAME>)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import faust
import structlog

from worker import logs
from worker.agents import expire_idle, health_views, wire
from worker.app import create_app
from worker.infer import ModelMismatch, TritonScorer
from worker.settings import Settings
from worker.tokenizer import TurnTokenizer, default_tokenizer_path

log = structlog.get_logger("worker")


async def check_models(scorer: TritonScorer, max_batch: int, wait_s: float = 180.0) -> None:
    """Wait for Triton, then check its models; a mismatch stops the worker at once."""
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                await scorer.check_models(max_batch)
                return
            except ModelMismatch:
                raise
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("triton_not_ready", url=scorer.url, error=type(exc).__name__)
                await asyncio.sleep(1.0)
    finally:
        await scorer.close()  # the worker's loop opens its own channel


def main(argv: list[str] | None = None) -> None:
    settings = Settings(_cli_parse_args=sys.argv[1:] if argv is None else argv,
                        _cli_prog_name="python -m worker", _cli_kebab_case=True)
    logs.configure(settings.log_level)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    scorer = TritonScorer(settings.triton_url, settings.encoder_model, settings.head_model,
                          TurnTokenizer(default_tokenizer_path(), settings.max_tokens),
                          bucket_size=settings.bucket_size,
                          call_overhead_tokens=settings.call_overhead_tokens,
                          ssl=settings.triton_ssl,
                          root_certificates=settings.triton_root_certificates,
                          timeout_s=settings.triton_timeout_s,
                          emotion_model=settings.emotion_model,
                          aspect_model=settings.aspect_model)
    try:
        asyncio.run(check_models(scorer, settings.max_batch))
    except ModelMismatch as exc:
        log.error("model_mismatch", error=str(exc))
        sys.exit(2)
    wiring = create_app(settings)
    wire(wiring, settings, scorer)
    health_views(wiring, lambda: scorer.healthy)
    expire_idle(wiring, settings)
    log.info("starting", broker=settings.broker, profile=settings.broker_profile,
             triton=settings.triton_url, max_batch=settings.max_batch,
             max_wait_ms=settings.max_wait_ms)
    # no loop= here: faust-streaming 0.15 then consumes nothing (seen); it makes its own
    faust.Worker(wiring.app, loglevel=settings.log_level,
                 redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
