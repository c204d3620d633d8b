"""Configuration from the environment (and `.env`), validated before anything starts.

Every knob is an environment variable so the same image runs under docker-compose, systemd or
a test harness; invalid values fail fast with one line naming the variable.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lms.domain.record import DEFAULT_MAX_FUTURE_SKEW, Rules

MIN_QUERY_TIMEOUT = 0.001
"""The smallest API_QUERY_TIMEOUT: MySQL's max_execution_time counts whole milliseconds."""


class SettingsError(Exception):
    """A configuration value is invalid; the message names the variable."""


class Settings(BaseSettings):
    """All settings of `lms`; field names are the environment variable names, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    pubsub_emulator_host: str | None = Field(
        default=None, description="host:port of the Pub/Sub emulator; unset for real Pub/Sub"
    )
    pubsub_project: str = Field(default="lms", min_length=1, description="Google Cloud project")
    pubsub_topic: str = Field(default="service-logs", min_length=3, description="topic id")
    pubsub_subscription: str = Field(
        default="lms-monitor", min_length=3, description="subscription id"
    )
    ack_deadline: int = Field(
        default=60, ge=10, le=600, description="ack deadline (s) of subscriptions LMS creates"
    )

    pull_mode: Literal["pull", "streaming"] = Field(
        default="pull",
        description="pull: unary Pull (exact flow control, the emulator's fast path); "
        "streaming: StreamingPull (server push, lowest latency on real Pub/Sub)",
    )
    pullers: int = Field(
        default=2, ge=1, le=64, description="parallel Pull loops or StreamingPull streams"
    )

    mysql_host: str = Field(default="127.0.0.1", description="MySQL host")
    mysql_port: int = Field(default=3306, ge=1, le=65535, description="MySQL port")
    mysql_user: str = Field(default="root", description="MySQL user")
    mysql_password: str = Field(default="", description="MySQL password")
    mysql_database: str = Field(
        default="lms",
        pattern=r"^[A-Za-z0-9_]{1,64}$",
        description="database name (created if missing)",
    )
    db_timeout: float = Field(
        default=30.0, gt=0, description="seconds before a hung database call is abandoned"
    )

    batchsize: int = Field(default=5000, ge=1, le=100_000, description="messages per batch")
    flushinterval: float = Field(
        default=60.0, gt=0, description="seconds between flushes of a partial batch"
    )
    max_outstanding: int | None = Field(
        default=None, ge=1, description="received-but-unacked messages (default 2 x BATCHSIZE)"
    )
    max_outstanding_bytes: int = Field(
        default=100 << 20,
        ge=1024,
        description="bytes of received-but-unacked messages (as python-pubsub's flow control:"
        " 100 MiB); a message larger than this is taken alone",
    )
    batch_max_bytes: int = Field(
        default=16 << 20,
        ge=1024,
        description="bytes of the message bodies of one batch: a buffer holding that much"
        " flushes at once, so one transaction stays well within DB_TIMEOUT",
    )
    shutdown_timeout: float = Field(
        default=30.0,
        gt=0,
        description="seconds a graceful stop may take to flush, commit and ack; past it the"
        " work under way is abandoned unacked (redelivered later) and lms mon exits 3",
    )
    duration: float | None = Field(
        default=None, gt=0, description="stop after this many seconds (unset: run until signal)"
    )
    max_future_skew: float = Field(
        default=DEFAULT_MAX_FUTURE_SKEW,
        ge=0,
        le=10 * 366 * 86400,
        description="seconds a log's timestamp may be ahead of the server's clock; a later"
        " one is rejected (invalid_field), by HTTP ingestion and by `lms mon`",
    )

    sim_services: int = Field(default=5, ge=1, le=10_000, description="simulated services")
    sim_rate: float = Field(
        default=20.0, gt=0, description="messages per second per simulated service (mean)"
    )
    publish_batch_size: int = Field(
        default=1000, ge=1, le=1000, description="messages per Publish request"
    )
    publish_concurrency: int = Field(
        default=8, ge=1, le=256, description="Publish requests in flight at once"
    )

    api_host: str = Field(
        default="127.0.0.1", min_length=1, description="address `lms api` listens on (0.0.0.0: all)"
    )
    api_port: int = Field(default=3000, ge=1, le=65535, description="port of `lms api`")
    api_token: SecretStr | None = Field(
        default=None,
        description="when set, `lms api` requires `Authorization: Bearer <API_TOKEN>`"
        " on every endpoint but /healthz",
    )
    ingest_tokens: SecretStr | None = Field(
        default=None,
        description="comma-separated tokens accepted by the ingestion endpoints, as"
        " `Authorization: Bearer <token>` or as the password of HTTP Basic (one per service,"
        " several during a rotation); unset: ingestion needs no token",
    )
    ingest_allow_anonymous: bool = Field(
        default=False,
        description="let `lms api` serve ingestion without INGEST_TOKENS on a non-loopback"
        " address (refused otherwise)",
    )
    api_allowed_hosts: str = Field(
        default="localhost,127.0.0.1,[::1]",
        min_length=1,
        description="comma-separated Host header names (any port) accepted while `lms api`"
        " listens on a loopback address, against DNS rebinding; `*` accepts any",
    )
    api_pool_size: int = Field(
        default=10, ge=1, le=200, description="database connections of `lms api`"
    )
    api_query_timeout: float = Field(
        default=10.0,
        le=3600,
        description="seconds a query of `lms api` may run (0.001-3600: the server's limit"
        " counts milliseconds)",
    )
    api_max_buckets: int = Field(
        default=10_000,
        ge=1,
        le=1_000_000,
        description="counts one answer of /v1/severity, /v1/services or /v1/consistency may"
        " hold (one per time bucket, service and severity); over it: 422",
    )
    facets_max_rows: int = Field(
        default=1_000,
        ge=1,
        le=10_000_000,
        description="newest matching logs GET /v1/logs/facets counts at most (a sample of"
        " them beyond it: complete=false), so facets stay fast on big tables",
    )
    mon_metrics_url: str | None = Field(
        default=None,
        description="URL of `lms mon`'s Prometheus metrics (e.g. http://127.0.0.1:9464/metrics)"
        " that GET /v1/pipeline reads; unset: the pipeline's state is unknown",
    )
    mon_metrics_timeout: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="seconds GET /v1/pipeline waits for MON_METRICS_URL; past it: down",
    )
    api_header_timeout: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="seconds a client of `lms api` has to send a request's headers, from"
        " the moment it connects or its previous answer was sent; then it is disconnected",
    )
    api_keepalive_timeout: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="seconds `lms api` keeps an idle keep-alive connection open",
    )
    api_limit_concurrency: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="connections and requests one `lms api` process serves at once; past"
        " it new requests get 503",
    )
    ingest_body_timeout: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="seconds an ingestion request's body may take to arrive; past it: 408",
    )

    api_query: bool = Field(
        default=True, description="`lms api` serves the query API (/v1/logs GET, /v1/services, ...)"
    )
    api_ingest: bool = Field(
        default=True, description="`lms api` serves HTTP ingestion (POST /v1/logs, ...)"
    )
    api_ui: bool = Field(
        default=True,
        description="`lms api` serves the web UI at /ui/ (and at / to browsers; docs/ui.md)",
    )
    api_workers: int = Field(
        default=1, ge=1, le=64, description="uvicorn worker processes of `lms api`"
    )

    ingest_publish_timeout: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="seconds an ingestion request waits for Pub/Sub to confirm its logs;"
        " past it the answer is 503 with Retry-After",
    )
    ingest_max_inflight_bytes: int = Field(
        default=64 << 20,
        ge=1 << 20,
        description="bytes being published at once by `lms api`; a request that does not"
        " fit is answered 429 with Retry-After",
    )
    ingest_linger: float = Field(
        default=0.005,
        ge=0,
        le=1,
        description="seconds the publisher collects logs of concurrent requests into one"
        " Publish request",
    )

    ingest_max_body_bytes: int = Field(
        default=10 << 20,
        ge=1024,
        description="bytes of an ingestion request body as sent (compressed); over it: 413",
    )
    ingest_max_decoded_bytes: int = Field(
        default=64 << 20,
        ge=1024,
        description="bytes of an ingestion request body once decompressed; over it: 413",
    )
    ingest_max_logs: int = Field(
        default=10_000, ge=1, le=1_000_000, description="logs per ingestion request; over it: 413"
    )

    metrics_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="address of the /metrics, /healthz, /readyz server (0.0.0.0: all)",
    )
    metrics_port: int = Field(
        default=9464, ge=0, le=65535, description="port of that server; 0 disables it"
    )

    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="`lms retention`: keep the logs of the last this many whole UTC days (and"
        " today), with their rollups and rejections; unset: keep everything",
    )
    retention_chunk: int = Field(
        default=5000,
        ge=10,
        le=100_000,
        description="`lms retention`: rows per transaction of expiry and compaction",
    )
    compact_after_days: int = Field(
        default=1,
        ge=1,
        le=100_000,
        description="`lms retention`: merge the rollup rows of UTC days at least this many"
        " days before today into one per key and hour (service_severity: per key and day)",
    )

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="minimum level of log lines"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: JSON lines unless stdout is a terminal"
    )

    @field_validator("api_query_timeout")
    @classmethod
    def _timeout_in_milliseconds(cls, value: float) -> float:
        # Below a millisecond the server's limit would round to 0, which means "no limit".
        if value < MIN_QUERY_TIMEOUT:
            raise ValueError(
                f"must be at least {MIN_QUERY_TIMEOUT} seconds: the database's statement limit"
                " counts milliseconds, and less would round to 0, which disables it"
            )
        return value

    @model_validator(mode="after")
    def _outstanding_fits_a_batch(self) -> Settings:
        if self.max_outstanding is None:
            self.max_outstanding = 2 * self.batchsize
        elif self.max_outstanding < self.batchsize:
            raise ValueError(
                "MAX_OUTSTANDING must be at least BATCHSIZE, or a batch could never fill up"
            )
        if self.max_outstanding_bytes < self.batch_max_bytes:
            raise ValueError(
                "MAX_OUTSTANDING_BYTES must be at least BATCH_MAX_BYTES, or a batch could never"
                " fill up"
            )
        return self

    @property
    def outstanding_limit(self) -> int:
        """MAX_OUTSTANDING after its default has been applied."""
        assert self.max_outstanding is not None
        return self.max_outstanding

    @property
    def ingest_token_list(self) -> list[str]:
        """INGEST_TOKENS split at commas, blanks dropped."""
        if self.ingest_tokens is None:
            return []
        return [
            tok.strip() for tok in self.ingest_tokens.get_secret_value().split(",") if tok.strip()
        ]

    @property
    def record_rules(self) -> Rules:
        """The rules of lms.domain.record that depend on configuration."""
        return Rules(self.max_future_skew)

    @property
    def topic_path(self) -> str:
        return f"projects/{self.pubsub_project}/topics/{self.pubsub_topic}"

    @property
    def subscription_path(self) -> str:
        return f"projects/{self.pubsub_project}/subscriptions/{self.pubsub_subscription}"


def load_settings(**overrides: Any) -> Settings:
    """Build settings, turning pydantic's multi-line report into one line per bad variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = "_".join(str(part) for part in error["loc"]).upper() or "settings"
            value = error.get("input")
            problems.append(f"{name}={value!r}: {error['msg']}" if error["loc"] else error["msg"])
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
