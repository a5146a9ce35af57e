"""The agents plugin's settings (`FAAS_AGENTS_*`): `faas config` lists them with their defaults."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from app.config import SettingsGroup


class AgentsConfig(SettingsGroup):
    group = "agents"

    http_allow_networks: str = Field(
        default="",
        description="Comma-separated private networks (CIDR) `http_request` may reach besides public addresses, "
        "e.g. an internal API; cloud metadata addresses stay refused",
    )
    http_timeout: float = Field(default=10.0, gt=0, le=300, description="Seconds per `http_request` hop")
    tool_timeout: float = Field(default=60.0, gt=0, le=3600, description="Seconds a tool call may take")

    @field_validator("http_allow_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            ipaddress.ip_network(part, strict=False)
        return value

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(p.strip(), strict=False) for p in self.http_allow_networks.split(",") if p.strip()]
