"""Settings from SEALOG_* environment variables and flags, refused at start-up when wrong."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sealog.events import DEFAULT_SECRET_KEYS
from sealog.preparers import default_processes

# Requests run on a pool of 40 threads (Starlette's, through anyio): searches may take at
# most this many, so that ingest, sign-ins and reads of one event always find a thread.
MAX_SEARCH_CONCURRENCY = 32


class SettingsError(ValueError):
    """Raised for a setting that cannot work; the message says how to fix it."""


@dataclass(frozen=True)
class Settings:
    """Everything a Sealog process needs to know about its environment."""

    data_dir: Path = Path("sealog-data")
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    redact_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
    sqlite_synchronous: str = "FULL"
    log_host: str = "sealog.local"
    signing_key_file: Path | None = None
    checkpoint_interval: float = 1.0
    export_dir: Path | None = None
    export_workers: int = 1
    export_expiry_days: float = 7
    export_lease_seconds: float = 30
    # Processes that prepare ingested batches beside the serving one; None: one where
    # there is a second core, else none.
    ingest_processes: int | None = None
    # Searches (lists and counts) that run at once, each in a thread; None: one a core. The
    # others wait their turn at most search_queue_seconds; each runs at most
    # search_budget_seconds of database work.
    search_concurrency: int | None = None
    search_queue_seconds: float = 10
    search_budget_seconds: float = 5
    # Streams: the key that seals their secrets (made on first start, shared like the
    # signing key), how many deliver at once in each serve or worker process, and whether
    # they may send over plain HTTP or to private addresses.
    streams_key_file: Path | None = None
    stream_workers: int = 1
    stream_lease_seconds: float = 60
    stream_linger_seconds: float = 0.25
    streams_allow_http: bool = False
    streams_allow_private: bool = False
    # The bearer token GET /metrics asks for; None: /metrics is off.
    metrics_token: str | None = None
    # Retention: the fewest days an org's policy may keep its events (None: no floor), and
    # how often serve and worker purge what policies no longer keep.
    retention_min_days: int | None = None
    purge_interval_seconds: float = 600
    purge_batch: int | None = None  # events a purge transaction removes; None: the store's

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to sealog.db in the data folder; a SQLite URL
        carries SEALOG_SQLITE_SYNCHRONOUS unless it sets synchronous itself."""
        url = self.database_url or f"sqlite:///{self.data_dir.resolve() / 'sealog.db'}"
        if url.startswith("sqlite:///"):
            from sealog.store.sqlite import with_option

            url = with_option(url, "synchronous", self.sqlite_synchronous)
        return url

    @property
    def resolved_ingest_processes(self) -> int:
        """How many preparing processes to run (0: prepare in the serving process)."""
        if self.ingest_processes is None:
            return default_processes()
        return self.ingest_processes

    @property
    def resolved_search_concurrency(self) -> int:
        """How many searches may run at once: one a core, at most MAX_SEARCH_CONCURRENCY."""
        return self.search_concurrency or min(os.cpu_count() or 1, MAX_SEARCH_CONCURRENCY)

    @property
    def resolved_export_dir(self) -> Path:
        """Where export files are written."""
        return self.export_dir or self.data_dir / "exports"

    @property
    def resolved_signing_key_file(self) -> Path:
        """Where the log's signing key lives (made on first start)."""
        return self.signing_key_file or self.data_dir / "signing.key"

    @property
    def resolved_streams_key_file(self) -> Path:
        """Where the key sealing streams' secrets lives (made on first start)."""
        return self.streams_key_file or self.data_dir / "streams.key"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from SEALOG_* variables, then overrides that are not None."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if env.get("SEALOG_DATA_DIR"):
            values["data_dir"] = Path(env["SEALOG_DATA_DIR"])
        if env.get("SEALOG_DATABASE_URL"):
            values["database_url"] = env["SEALOG_DATABASE_URL"]
        if env.get("SEALOG_HOST"):
            values["host"] = env["SEALOG_HOST"]
        if env.get("SEALOG_PORT"):
            values["port"] = _port(env["SEALOG_PORT"], "SEALOG_PORT")
        if env.get("SEALOG_REDACT_KEYS"):
            keys = tuple(k.strip() for k in env["SEALOG_REDACT_KEYS"].split(",") if k.strip())
            if not keys:
                raise SettingsError("SEALOG_REDACT_KEYS must list key names separated by commas")
            values["redact_keys"] = keys
        if env.get("SEALOG_LOG_HOST"):
            values["log_host"] = env["SEALOG_LOG_HOST"]
        if env.get("SEALOG_SIGNING_KEY_FILE"):
            values["signing_key_file"] = Path(env["SEALOG_SIGNING_KEY_FILE"])
        if env.get("SEALOG_CHECKPOINT_INTERVAL"):
            try:
                values["checkpoint_interval"] = float(env["SEALOG_CHECKPOINT_INTERVAL"])
            except ValueError:
                raise SettingsError(
                    "SEALOG_CHECKPOINT_INTERVAL must be seconds, e.g. 1 or 0.5"
                ) from None
        if env.get("SEALOG_METRICS_TOKEN"):
            values["metrics_token"] = env["SEALOG_METRICS_TOKEN"]
        if env.get("SEALOG_STREAMS_KEY_FILE"):
            values["streams_key_file"] = Path(env["SEALOG_STREAMS_KEY_FILE"])
        for name, key in (("SEALOG_STREAMS_ALLOW_HTTP", "streams_allow_http"),
                          ("SEALOG_STREAMS_ALLOW_PRIVATE", "streams_allow_private")):
            if env.get(name):
                if env[name] not in ("0", "1"):
                    raise SettingsError(f"{name} must be 1 (allow) or 0, not {env[name]!r}")
                values[key] = env[name] == "1"
        if env.get("SEALOG_EXPORT_DIR"):
            values["export_dir"] = Path(env["SEALOG_EXPORT_DIR"])
        for name, key, kind in (("SEALOG_EXPORT_WORKERS", "export_workers", int),
                                ("SEALOG_STREAM_WORKERS", "stream_workers", int),
                                ("SEALOG_INGEST_PROCESSES", "ingest_processes", int),
                                ("SEALOG_SEARCH_CONCURRENCY", "search_concurrency", int),
                                ("SEALOG_SEARCH_QUEUE_SECONDS", "search_queue_seconds", float),
                                ("SEALOG_SEARCH_BUDGET_SECONDS", "search_budget_seconds",
                                 float),
                                ("SEALOG_EXPORT_EXPIRY_DAYS", "export_expiry_days", float),
                                ("SEALOG_EXPORT_LEASE_SECONDS", "export_lease_seconds", float),
                                ("SEALOG_STREAM_LEASE_SECONDS", "stream_lease_seconds",
                                 float),
                                ("SEALOG_STREAM_LINGER_SECONDS", "stream_linger_seconds",
                                 float),
                                ("SEALOG_RETENTION_MIN_DAYS", "retention_min_days", int),
                                ("SEALOG_PURGE_BATCH", "purge_batch", int),
                                ("SEALOG_PURGE_INTERVAL_SECONDS", "purge_interval_seconds",
                                 float)):
            if env.get(name):
                try:
                    values[key] = kind(env[name])
                except ValueError:
                    raise SettingsError(f"{name} must be a number, not {env[name]!r}") from None
        if env.get("SEALOG_SQLITE_SYNCHRONOUS"):
            values["sqlite_synchronous"] = env["SEALOG_SQLITE_SYNCHRONOUS"].upper()
        settings = cls(**values)
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        settings.check()
        return settings

    def check(self) -> None:
        """Raises SettingsError for a value that cannot work."""
        for name in self.redact_keys:
            if not any(c.isascii() and c.isalnum() for c in name):
                raise SettingsError(
                    f"SEALOG_REDACT_KEYS: {name!r} has no letters or digits to match keys by; "
                    "list names such as password, api_key"
                )
        if not 0 < self.port < 65536:
            raise SettingsError(f"port {self.port} is out of range; use 1-65535 (e.g. 8000)")
        if self.sqlite_synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise SettingsError(
                "SEALOG_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA (default FULL)"
            )
        if not 0 <= self.export_workers <= 16:
            raise SettingsError("SEALOG_EXPORT_WORKERS must be 0 (none) to 16")
        if not 1 <= self.stream_lease_seconds <= 3600:
            raise SettingsError("SEALOG_STREAM_LEASE_SECONDS must be 1 to 3600 (default 60)")
        if not 0 <= self.stream_linger_seconds <= 10:
            raise SettingsError("SEALOG_STREAM_LINGER_SECONDS must be 0 to 10 (default 0.25)")
        if not 0 <= self.stream_workers <= 16:
            raise SettingsError("SEALOG_STREAM_WORKERS must be 0 (none) to 16")
        if self.ingest_processes is not None and not 0 <= self.ingest_processes <= 16:
            raise SettingsError("SEALOG_INGEST_PROCESSES must be 0 (prepare in the serving "
                                "process) to 16")
        if (self.search_concurrency is not None
                and not 1 <= self.search_concurrency <= MAX_SEARCH_CONCURRENCY):
            raise SettingsError(
                f"SEALOG_SEARCH_CONCURRENCY must be 1 to {MAX_SEARCH_CONCURRENCY} (default: one "
                "a core): requests share 40 threads, and searches must leave some to the rest")
        if not 0 < self.search_queue_seconds <= 300:
            raise SettingsError("SEALOG_SEARCH_QUEUE_SECONDS must be more than 0 and at most "
                                "300, e.g. 10")
        if not 0 < self.search_budget_seconds <= 600:
            raise SettingsError("SEALOG_SEARCH_BUDGET_SECONDS must be more than 0 and at most "
                                "600, e.g. 5")
        if self.export_expiry_days <= 0:
            raise SettingsError("SEALOG_EXPORT_EXPIRY_DAYS must be more than 0, e.g. 7")
        if self.export_lease_seconds < 1:
            raise SettingsError("SEALOG_EXPORT_LEASE_SECONDS must be at least 1, e.g. 30")
        if self.retention_min_days is not None and not 1 <= self.retention_min_days <= 36_500:
            raise SettingsError("SEALOG_RETENTION_MIN_DAYS must be 1 to 36500 days, e.g. 183 "
                                "(six months)")
        if self.purge_batch is not None and not 1 <= self.purge_batch <= 100_000:
            raise SettingsError("SEALOG_PURGE_BATCH must be 1 to 100000 events, e.g. 1000")
        if not 1 <= self.purge_interval_seconds <= 86_400:
            raise SettingsError("SEALOG_PURGE_INTERVAL_SECONDS must be 1 to 86400, e.g. 600")
        if not 0 < self.checkpoint_interval <= 2:
            raise SettingsError(
                "SEALOG_CHECKPOINT_INTERVAL must be more than 0 and at most 2 seconds"
            )
        if not self.log_host or any(c.isspace() or c in "+/" for c in self.log_host):
            raise SettingsError(
                f"SEALOG_LOG_HOST {self.log_host!r} must be a host name such as "
                "audit.example.com (no spaces, '+' or '/')"
            )
        url = self.resolved_database_url
        if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise SettingsError(
                f"database URL {url!r} is not supported; use sqlite:///path/to/sealog.db or "
                "postgresql://user@host/dbname"
            )


def _port(text: str, name: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise SettingsError(f"{name} must be a port number such as 8000, not {text!r}") from None
