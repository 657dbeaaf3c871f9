"""Dashboard settings: environment variables (prefix DASH_) and CLI flags. The broker, its
credentials and the topic names are the worker's own settings (CHAT_*)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DASH_", extra="ignore")

    host: str = Field("127.0.0.1", description="listen address; outside loopback a token is "
                      "required")
    port: int = 8090
    token: SecretStr | None = Field(None, description="access token (header, or once via "
                                    "/login?token=, which sets a cookie)")
    group_id: str = Field("chat-dashboard", description="the dashboard's own consumer group")
    max_conversations: int = 500
    max_turns: int = Field(200, description="turns kept per conversation")
    max_alerts: int = 200
    ttl_s: float = Field(1800.0, description="forget a conversation after this long idle; a "
                         "(re)started dashboard reads back this much history")
    client_queue: int = Field(2000, description="updates buffered per browser; a slower one "
                              "is dropped and reconnects")

    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def check(self) -> None:
        """Refuse to serve customers' words beyond this machine without authentication."""
        if not self.is_loopback() and not (self.token and self.token.get_secret_value()):
            raise SystemExit(f"DASH_HOST={self.host} is not loopback: set DASH_TOKEN (or keep "
                             "127.0.0.1 behind an authenticating proxy, see deploy/README.md)")
