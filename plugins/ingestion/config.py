"""The ingestion plugin's settings (`FAAS_INGESTION_*`): `faas config` lists them with their defaults."""

from __future__ import annotations

from pydantic import Field, field_validator

from app.config import SettingsGroup


class IngestionConfig(SettingsGroup):
    group = "ingestion"

    max_upload_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1,
        le=1024**3,
        description="Largest file one upload may carry (413 above it; FAAS_MAX_BODY_BYTES caps the whole request)",
    )
    max_files: int = Field(default=20, ge=1, le=1000, description="Files one upload request may carry")
    fetch_max_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, le=1024**3, description="Largest document a URL job downloads"
    )
    fetch_timeout_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Time a URL job's download may take, redirects included"
    )
    fetch_max_redirects: int = Field(default=5, ge=0, le=20, description="Redirects a URL job follows")
    fetch_hosts: str = Field(
        default="",
        description="Names resolved without DNS, `name=address,...` (every address is still checked by the SSRF guard)",
    )
    fetch_allow_loopback: bool = Field(
        default=False, description="For tests only: let URL jobs fetch from loopback addresses (127.0.0.0/8, ::1)"
    )
    parse_timeout_seconds: float = Field(
        default=120.0, gt=0, le=3600, description="Time parsing one document may take before its job fails"
    )
    embed_batch: int = Field(default=64, ge=1, le=2048, description="Chunks per embedding call to the gateway")
    embed_concurrency: int = Field(
        default=2, ge=1, le=64, description="Embedding calls one job keeps in flight (the local model: one core each)"
    )
    retry_waits: str = Field(
        default="1,3,9",
        description="Pauses in seconds, `a,b,...`, before each retry of a gateway or rag call that failed transiently "
        "(unavailable, timed out, rate limited); one pause per retry, `0` for one immediate retry",
    )

    @field_validator("fetch_hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        for item in filter(None, (p.strip() for p in value.split(","))):
            name, sep, address = item.partition("=")
            if not sep or not name.strip() or not address.strip():
                raise ValueError("write name=address pairs separated by commas")
        return value

    @field_validator("retry_waits")
    @classmethod
    def _waits(cls, value: str) -> str:
        try:
            waits = [float(p) for p in value.split(",")]
        except ValueError:
            raise ValueError("write seconds separated by commas, e.g. 1,3,9") from None
        if not 1 <= len(waits) <= 10 or not all(0 <= w <= 600 for w in waits):
            raise ValueError("write 1 to 10 pauses, each 0 to 600 seconds")
        return value

    def waits(self) -> tuple[float, ...]:
        """The pauses before the retries of a transient failure (`retry_waits`)."""
        return tuple(float(p) for p in self.retry_waits.split(","))

    def hosts(self) -> dict[str, str]:
        pairs = (p.strip().partition("=") for p in self.fetch_hosts.split(",") if p.strip())
        return {name.strip(): address.strip() for name, _, address in pairs}
