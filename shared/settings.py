"""The one settings object. No other module reads the environment."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of every process, from `AUTOMATION_*` variables (see `.env.example`)."""

    model_config = SettingsConfigDict(env_prefix="AUTOMATION_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/automation",
        description="SQLAlchemy URL of the PostgreSQL database (asyncpg driver).",
    )
    amqp_url: str = Field("amqp://guest:guest@127.0.0.1:5672/", description="RabbitMQ URL, vhost included.")
    queue_prefix: str = Field(
        "automation",
        description="Prefix of every exchange and queue name, so several deployments can share a vhost.",
    )
    log_dir: Path = Field(Path("logs/automation"), description="Root of the per-run log files.")
    media_dir: Path = Field(Path("media"), description="Where generated images are written.")
    media_url: str = Field("/media", description="URL prefix under which media_dir is served.")
    ai_provider: str = Field(
        "local",
        description="AI backend: local (offline), openai (any OpenAI-compatible API), simulated (benchmarks), "
        "or module:factory for a plugin (a callable taking the settings and returning a provider).",
    )
    openai_base_url: str = Field("https://api.openai.com/v1", description="Base URL of the OpenAI-compatible API.")
    openai_api_key: str = Field("", description="API key for the OpenAI-compatible API.")
    openai_chat_model: str = Field("gpt-4o-mini", description="Chat model for clustering, ideas, articles, prompts.")
    openai_image_model: str = Field("gpt-image-1", description="Image model.")
    openai_timeout_seconds: float = Field(120.0, gt=0, description="Timeout of one API request.")
    openai_max_retries: int = Field(4, ge=0, le=20, description="Retries of one call (429, 5xx, timeouts).")
    openai_max_concurrency: int = Field(8, ge=1, le=256, description="API calls in flight per process.")
    ai_latency_ms: int = Field(0, ge=0, description="Latency of the simulated provider, per call.")
    image_width: int = Field(512, ge=16, le=4096)
    image_height: int = Field(288, ge=16, le=4096)
    concurrency: int = Field(4, ge=1, le=256, description=(
        "Default messages handled at once per consumer; for a stage, batches in their claim and AI call "
        "(each one's finish overlaps the next)."))
    db_pool_size: int = Field(
        8, ge=1, le=200,
        description="Database connections per consumer or API process, and a quarter more, opened as needed and "
        "kept. The AI call holds none, so a high concurrency needs few: batches beyond it wait a moment for the "
        "database.",
    )
    batch_window: int = Field(
        16, ge=0, le=100000,
        description="Batch messages a run keeps queued per stage, refilled as they finish, so one big run "
        "cannot starve other sites' runs sharing the stage's queue; it opens to the run's share of what the "
        "stage's consumers hold at once (0 = emit every batch at once).",
    )
    stream_stages: bool = Field(
        True,
        description="Stages 3-6 take each item as soon as the batch that made it commits, so articles reach review "
        "from the run's first minutes (off: each stage starts when the one before it has finished).",
    )
    event_loop: Literal["uvloop", "asyncio"] = Field(
        "uvloop",
        description="Event loop of the consumers, the scheduler and the API: uvloop (libuv; less CPU per message "
        "and statement) or asyncio (the standard library's, e.g. where uvloop is not installed).",
    )
    outbox_poll_seconds: float = Field(
        1.0, gt=0, le=10, description="How often each process's relay polls for outbox rows that no process of "
        "their own sends (one statement; its sweep runs when the poll finds some). At most 10 s: the poll also "
        "deletes the rows its process sent, which must happen within their 30 s reservation.")
    batch_lease_seconds: int = Field(
        60, ge=3, description="How long a claim lasts without renewal; consumers renew it every third of it."
    )
    watchdog_interval_seconds: float = Field(5.0, gt=0, description="How often the watchdog looks.")
    stale_run_seconds: int = Field(
        6 * 3600, ge=10, description="A running run without progress for this long is failed (the seed's lock timeout)."
    )
    stall_seconds: int = Field(
        90, ge=1,
        description="A running run with no progress and no batch in flight for this long has its current stage "
        "re-requested by the watchdog (recovers runs whose messages were dead-lettered while the database was "
        "away). Must exceed the retry budget (the sum of the retry delays).",
    )
    max_attempts: int = Field(5, ge=1, le=50, description="Tries of a batch on transient errors.")
    retry_base_seconds: float = Field(2.0, gt=0, description="First retry delay; doubles each try.")
    schedule_grace_seconds: int = Field(3600, ge=0, description="A slot missed by less than this still fires.")
    schedule_resync_seconds: float = Field(30.0, gt=0, le=60, description="How often the scheduler rereads configs.")
    credit_buffer: float = Field(1.2, ge=1.0, description="A run starts only if balance >= estimate x this.")
    metrics_port: int = Field(
        9100, ge=0, le=65535,
        description="Port on which consumer and scheduler processes serve /metrics, /healthz and /readyz; "
        "0 disables it. The API serves them on its own port.",
    )
    metrics_host: str = Field("0.0.0.0", description="Interface the metrics port listens on.")
    metrics_refresh_seconds: float = Field(
        5.0, gt=0, le=300,
        description="How often the control and API processes reread the pipeline-state gauges from the database.",
    )

    secret_key: SecretStr = Field(
        SecretStr(""),
        description="Encrypts the publish targets' credentials at rest (any long random string; "
        "`automation secret-key` prints one). Without it, publish targets cannot be saved.",
    )
    publish_timeout_seconds: float = Field(30.0, gt=0, le=600, description="Timeout of one request to a "
                                           "publish target (WordPress).")

    public_url: str = Field(
        "", description="Where people reach the API and dashboard (e.g. https://automation.example.com); "
        "notifications link to the dashboard with it. Empty: notifications carry no link.")
    notify_allow_private_targets: bool = Field(
        False, description="Let webhook and Slack channels reach loopback, link-local and private addresses "
        "(tests, an intranet receiver). Off: such URLs are refused when saved and when delivered to.")
    notify_timeout_seconds: float = Field(10.0, gt=0, le=120, description="Timeout of one notification delivery "
                                          "(webhook, Slack, SMTP).")
    notify_max_attempts: int = Field(
        20, ge=1, le=50, description="Tries of one notification delivery; retries past the last delay tier wait "
        "the longest tier (with the defaults, about 4.5 minutes in all).")
    notify_credits_check_seconds: float = Field(
        3600.0, gt=0, description="How often the notify consumer checks every site with scheduled runs for "
        "credits short of its next run (credits.low, at most once a day and site).")
    smtp_host: str = Field("", description="SMTP server for email notifications; empty: email channels fail "
                           "with a clear error.")
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_tls: Literal["starttls", "tls", "none"] = Field(
        "starttls", description="starttls (upgrade a plain connection, port 587), tls (implicit TLS, port 465) "
        "or none (a local relay).")
    smtp_username: str = Field("", description="SMTP login; empty: no authentication.")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP password.")
    smtp_from: str = Field("automation@localhost", description="From address of notification emails.")

    @model_validator(mode="after")
    def _stall_after_retries(self) -> Settings:
        budget = self.retry_base_seconds * (2 ** max(1, self.max_attempts - 1) - 1) * 1.2
        if self.stall_seconds <= budget:
            raise ValueError(f"stall_seconds ({self.stall_seconds}) must exceed the retry budget ({budget:.0f} s: "
                             "retry_base_seconds doubled over max_attempts, with jitter), or the watchdog would "
                             "re-request stages whose retries are still pending")
        return self

    @field_validator("database_url")
    @classmethod
    def _asyncpg_only(cls, value: str) -> str:
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("must be a postgresql+asyncpg:// URL")
        return value

    @field_validator("ai_provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        if value not in ("local", "openai", "simulated") and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", value):
            raise ValueError("must be local, openai, simulated, or module:factory")
        return value

    @field_validator("amqp_url")
    @classmethod
    def _amqp_only(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://")):
            raise ValueError("must be an amqp:// or amqps:// URL")
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process (tests build their own `Settings(...)`)."""
    return Settings()
