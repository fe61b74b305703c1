"""Where the engine sends requests and how: endpoint, model, limits, cache and Batch API files.

Resolution order for the endpoint: explicit arguments (``--base-url``, ``--model``, ``--api-key``),
then the environment (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``CURATE_MODEL``), then a TOML config
file (``--llm-config FILE`` or ``$CURATE_LLM_CONFIG``) with keys ``base_url``, ``model``,
``api_key_env`` (the *name* of an environment variable holding the key; a key itself is never read
from or written to any file), ``concurrency``, ``timeout``, ``price_in``, ``price_out``.

An endpoint is configured when there is a base URL or an API key. Without one, LLM stages write
OpenAI Batch API request files instead of calling anything.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from curate.errors import UserError

DEFAULT_MODEL = "gpt-4o-mini"

# USD per 1M tokens (input, output), list prices; override with --price-in/--price-out.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-3.5-turbo": (0.50, 1.50),
}


def default_cache_path() -> Path:
    if os.environ.get("CURATE_LLM_CACHE"):
        return Path(os.environ["CURATE_LLM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "curate" / "llm.sqlite"


@dataclasses.dataclass
class EngineConfig:
    """Everything the engine needs; build it with :func:`resolve` (CLI/env/config) or directly."""

    base_url: str | None = None  # the first server; ``base_urls`` holds the whole fleet
    api_key: str | None = dataclasses.field(default=None, repr=False)  # never printed
    model: str = DEFAULT_MODEL
    concurrency: int = 16
    timeout: float = 120.0  # seconds per HTTP request
    max_retries: int = 8  # transport retries per request (5xx, timeouts, malformed bodies)
    rate_limit_wait: float = 900.0  # total seconds a request may spend waiting on 429s
    max_fix: int = 2  # extra requests with the validation error fed back
    max_requests: int | None = None  # budget of HTTP requests for the run
    cache_path: Path | None = dataclasses.field(default_factory=default_cache_path)  # None: no cache
    batch_out: Path | None = None  # write Batch API input instead of calling the endpoint
    batch_in: tuple[Path, ...] = ()  # Batch API output/error files to merge into the cache first
    retry_failed: bool = False  # ask again for cached replies that fail validation / batch errors
    price_in: float | None = None  # USD per 1M input tokens
    price_out: float | None = None
    fail_fast: int = 20  # stop when this many requests in a row fail the same way (0: never)
    extra_budget: float | None = 0.25  # retries + fix-ups: at most this share of the first round (None: no limit)
    extra_min: int = 5  # ... but always allow this many
    response_format: bool = True  # False: strip response_format from every request (--no-response-format)
    base_urls: tuple[str, ...] = ()  # a fleet of OpenAI-compatible servers (repeat --base-url)
    server_fail_streak: int = 3  # connection errors/5xx in a row that take a server of a fleet out
    server_cooldown: float = 10.0  # seconds a failing server stays out (doubles while it keeps failing)
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    batch_max_requests: int = 50_000
    batch_max_bytes: int = 200_000_000
    progress: bool | None = None  # None: only on a terminal

    def __post_init__(self):
        urls = [u for u in (self.base_urls or ()) if u]
        if self.base_url and self.base_url not in urls:
            urls.insert(0, self.base_url)
        self.base_urls = tuple(dict.fromkeys(u.rstrip("/") for u in urls))
        self.base_url = self.base_urls[0] if self.base_urls else None

    @property
    def has_endpoint(self) -> bool:
        return bool(self.base_url or self.api_key)

    def prices(self) -> tuple[float, float] | None:
        if self.price_in is not None or self.price_out is not None:
            return (self.price_in or 0.0, self.price_out or 0.0)
        if self.base_url and "api.openai.com" not in self.base_url:
            return None  # a local or third-party server: unknown price
        return PRICES.get(self.model)

    def redact(self, text: str) -> str:
        """``text`` with the API key (if any) replaced by ``***``."""
        if self.api_key and len(self.api_key) >= 4:
            text = text.replace(self.api_key, "***")
        return text

    def public(self) -> dict[str, Any]:
        """The settings safe to print or store in a report (no API key)."""
        return {"base_url": self.base_url or ("https://api.openai.com/v1" if self.api_key else None),
                **({"base_urls": list(self.base_urls)} if len(self.base_urls) > 1 else {}),
                "model": self.model, "concurrency": self.concurrency, "timeout": self.timeout,
                "max_requests": self.max_requests, "cache": str(self.cache_path) if self.cache_path else None,
                "api_key": "set" if self.api_key else "not set"}


def _load_toml(path: str | os.PathLike) -> dict[str, Any]:
    from curate.io.files import load_toml

    data = load_toml(path, what="LLM config file")
    if "api_key" in data:
        raise UserError(f"{path}: put the API key in an environment variable and name it with api_key_env; "
                        "curate never reads keys from files")
    return data.get("llm", data)


def resolve(base_url: str | list[str] | tuple[str, ...] | None = None, api_key: str | None = None, model: str | None = None,
            config_file: str | os.PathLike | None = None, **overrides: Any) -> EngineConfig:
    """Build an :class:`EngineConfig` from arguments, then environment, then a config file.

    ``base_url`` may be a list (a fleet); ``OPENAI_BASE_URL`` and the config file's ``base_url`` may
    hold several URLs separated by spaces or commas."""
    file_cfg: dict[str, Any] = {}
    config_file = config_file or os.environ.get("CURATE_LLM_CONFIG")
    if config_file:
        file_cfg = _load_toml(config_file)
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or file_cfg.get("base_url")
    if isinstance(base_url, str):
        base_url = [u for u in base_url.replace(",", " ").split() if u]
    urls = tuple(base_url or ())
    if api_key is None:
        api_key = os.environ.get("OPENAI_API_KEY")
        if not api_key and file_cfg.get("api_key_env"):
            api_key = os.environ.get(file_cfg["api_key_env"])
    model = model or os.environ.get("CURATE_MODEL") or file_cfg.get("model") or DEFAULT_MODEL
    fields = {f.name for f in dataclasses.fields(EngineConfig)}
    kw = {k: v for k, v in file_cfg.items() if k in fields and k not in ("base_url", "api_key", "model")}
    kw.update({k: v for k, v in overrides.items() if v is not None})
    unknown = set(kw) - fields
    if unknown:
        raise TypeError(f"unknown engine settings: {sorted(unknown)}")
    for key in ("cache_path", "batch_out"):
        if isinstance(kw.get(key), str):
            kw[key] = Path(kw[key])
    kw.pop("base_urls", None)
    return EngineConfig(base_url=urls[0] if urls else None, base_urls=urls, api_key=api_key or None, model=model, **kw)
