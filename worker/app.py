"""The one faust.App, built from settings; topics and the state table declared once."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from worker import faust_fixes
from worker.settings import Settings

# The embedded local broker (Tansu) answers ListOffsets "latest" with the last batch's base
# offset + 1: one record per batch keeps changelog restore exact. Dead members must leave the
# group in seconds. Production Kafka takes Faust's defaults. (shared/notes/local-infra.md)
TANSU_PROFILE = {"producer_max_batch_size": 1, "broker_session_timeout": 6,
                 "broker_heartbeat_interval": 1}


TANSU_FETCH_WAIT_MS = 50


def narrow_fetch_wait(ms: int) -> None:
    """Tansu holds a fetch for its whole max wait even when data arrives (measured: median
    delivery 494 ms at the 1500 ms that Faust hard-codes, 4 ms at 50 ms). Faust has no setting
    for it, so the local profile narrows it for the consumers this process creates."""
    import aiokafka

    base = aiokafka.AIOKafkaConsumer
    if getattr(base, "narrowed", False):
        return

    class Consumer(base):  # type: ignore[misc, valid-type]
        narrowed = True

        def __init__(self, *args, **kwargs) -> None:
            kwargs["fetch_max_wait_ms"] = ms
            super().__init__(*args, **kwargs)

    aiokafka.AIOKafkaConsumer = Consumer


@dataclass
class Wiring:
    app: faust.App
    turns: faust.TopicT
    enriched: faust.TopicT
    alerts: faust.TopicT
    dlq: faust.TopicT
    table: faust.Table


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """TLS and SASL for production brokers, from settings; None for plaintext."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        context = create_ssl_context(cafile=settings.kafka_ssl_cafile)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism, ssl_context=context)


def create_app(settings: Settings) -> Wiring:
    faust_fixes.apply()  # before the app exists: input lost on reposition (worker/faust_fixes.py)
    profile = TANSU_PROFILE if settings.broker_profile == "tansu" else {}
    if settings.broker_profile == "tansu":
        narrow_fetch_wait(TANSU_FETCH_WAIT_MS)
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        store="memory://",  # the changelog topic is the durable copy; restored at start
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        datadir=settings.data_dir,
        broker_credentials=broker_credentials(settings),
        **profile,
    )

    raw = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")

    def raw_topic(name: str) -> faust.TopicT:
        return app.topic(name, schema=raw, partitions=settings.partitions)

    # key_type/value_type too: a table derives its serializers from them (json otherwise), and
    # a json key serializer on the table broke decoding of the source topic's keys (seen)
    table = app.Table("conversations", default=None, partitions=settings.partitions,
                      key_type=bytes, value_type=bytes, schema=raw)
    return Wiring(app, raw_topic(settings.topic_turns), raw_topic(settings.topic_enriched),
                  raw_topic(settings.topic_alerts), raw_topic(settings.topic_dlq), table)
