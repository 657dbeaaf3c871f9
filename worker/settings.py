"""Typed settings: environment variables (prefix CHAT_) and CLI flags. The only place that
reads the environment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.rules import AlertRules


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHAT_", extra="ignore")

    # Kafka
    broker: str = Field("kafka://127.0.0.1:9092", description="bootstrap servers, faust URL form")
    broker_profile: Literal["kafka", "tansu"] = Field(
        "kafka", description="'tansu' applies the embedded local broker's workarounds")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT")
    kafka_sasl_mechanism: str = Field("PLAIN", description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512")
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    kafka_ssl_cafile: str | None = Field(None, description="CA bundle for the brokers' TLS")
    app_id: str = Field("chat-sentiment", description="consumer group and table prefix")
    partitions: int = Field(4, description="partitions of the turns topic and the state table")
    topic_turns: str = "chat.turns"
    topic_enriched: str = "chat.turns.enriched"
    topic_alerts: str = "chat.alerts"
    topic_dlq: str = "chat.turns.dlq"
    # Triton
    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC address")
    encoder_model: str = "encoder"
    head_model: str = Field("step", description="step model name in Triton")
    emotion_model: str = Field("emotions", description="emotion model in Triton; empty: none "
                               "(events carry emotions: null)")
    aspect_model: str = Field("aspects", description="aspect-term model in Triton; empty: none "
                              "(events carry aspects: null)")
    triton_timeout_s: float = 10.0
    triton_ssl: bool = Field(False, description="TLS on the Triton gRPC channel")
    triton_root_certificates: str | None = Field(None, description="CA file for Triton's TLS")
    # micro-batching
    max_batch: int = Field(64, description="turns per micro-batch, across conversations")
    max_wait_ms: int = Field(20, description="longest wait to fill a micro-batch")
    bucket_size: int = Field(32, description="most turns in one encoder call")
    call_overhead_tokens: int = Field(
        64, description="cost of one encoder call in padded tokens, for length bucketing")
    max_tokens: int = 128
    # input limits and output content
    max_message_bytes: int = 65536
    echo_text: bool = Field(True, description="copy the turn's text into the enriched event")
    redact_pii: bool = Field(False, description="mask emails, phones, card numbers in echoed text")
    # alert rules: defaults live in AlertRules
    alert_level_threshold: float = AlertRules.level_threshold
    alert_negative_threshold: float = AlertRules.negative_threshold
    alert_streak: int = AlertRules.streak
    alert_drop: float = AlertRules.drop
    alert_sentiment_threshold: float = AlertRules.sentiment_threshold
    alert_cooldown_turns: int = AlertRules.cooldown_turns
    # state lifetime: dropped on the end event, and after this long without a message
    state_idle_s: float = Field(6 * 3600.0, description="drop a conversation's state after this "
                                "long without a message")
    state_sweep_s: float = Field(60.0, description="how often idle states are looked for")
    # process
    web_host: str = Field("127.0.0.1", description="address of /live/ and /ready/ (pod IP in k8s)")
    web_port: int = Field(6066, description="faust web port: /live/ and /ready/")
    data_dir: str = Field(".devstack/worker", description="faust data directory")
    log_level: str = "INFO"

    def alert_rules(self) -> AlertRules:
        return AlertRules(
            level_threshold=self.alert_level_threshold,
            negative_threshold=self.alert_negative_threshold,
            streak=self.alert_streak,
            drop=self.alert_drop,
            sentiment_threshold=self.alert_sentiment_threshold,
            cooldown_turns=self.alert_cooldown_turns,
        )
