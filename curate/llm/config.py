"""Where the engine sends requests and how: endpoint, model, limits, cache and Batch API files.

Resolution order for the endpoint: explicit arguments (``--base-url``, ``--model``, ``--api-key``),
then the environment (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``CURATE_MODEL``), then a TOML config
file (``--llm-config FILE`` or ``$CURATE_LLM_CONFIG``) with keys ``base_url``, ``model``,
``api_key_env`` (the *name* of an environment variable holding the key; a key itself is never read
from or written to any file), ``concurrency``, ``timeout``, ``price_in``, ``price_out`` and the other
limits of :data:`_FILE_KEYS` (at the top level or under ``[llm]``). An unknown key or a value of the
wrong type is an error naming it, not ignored.

An endpoint is configured when there is a base URL or an API key. Without one, LLM stages write
OpenAI Batch API request files instead of calling anything.
"""

from __future__ import annotations

import dataclasses
import math
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


# the keys an LLM config file may hold: (type, smallest value) for numbers, the type otherwise
_FILE_KEYS: dict[str, Any] = {
    "base_url": (str, list), "model": str, "api_key_env": str, "cache_path": str,
    "concurrency": (int, 1), "timeout": (float, 0.001), "max_retries": (int, 0), "rate_limit_wait": (float, 0),
    "max_fix": (int, 0), "max_requests": (int, 0), "price_in": (float, 0), "price_out": (float, 0),
    "fail_fast": (int, 0), "extra_budget": (float, 0), "extra_min": (int, 0), "response_format": bool,
    "server_fail_streak": (int, 1), "server_cooldown": (float, 0),
}


def _load_toml(path: str | os.PathLike) -> dict[str, Any]:
    from curate.io.files import load_toml

    data = load_toml(path, what="LLM config file")
    if "api_key" in data or "api_key" in (data.get("llm") if isinstance(data.get("llm"), dict) else {}):
        raise UserError(f"{path}: put the API key in an environment variable and name it with api_key_env; "
                        "curate never reads keys from files")
    data = data.get("llm", data)
    if not isinstance(data, dict):
        raise UserError(f"{path}: [llm] must be a table of settings")
    unknown = sorted(set(data) - set(_FILE_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(_FILE_KEYS)}")
    for key, value in data.items():
        _check_setting(path, key, value, _FILE_KEYS[key])
    return data


def _check_setting(path: str | os.PathLike, key: str, value: Any, spec: Any) -> None:
    """A config file's value of the right type (and not below its smallest value), or a one-line error."""
    if spec == (str, list):
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        want = "a URL or a list of URLs"
    elif isinstance(spec, tuple):
        kind, least = spec
        number = isinstance(value, int) or (kind is float and isinstance(value, float))
        ok = number and not isinstance(value, bool) and math.isfinite(value) and value >= least
        want = f"{'an integer' if kind is int else 'a number'} >= {least:g}"
    else:
        ok = isinstance(value, spec) and (spec is not str or bool(value.strip()))
        want = {str: "a non-empty string", bool: "true or false"}[spec]
    if not ok:
        raise UserError(f"{path}: {key} = {value!r}: expected {want}")


def check_base_url(url: str) -> str:
    """``url`` when it is an http(s) URL with a host, else a one-line error naming it."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise UserError(f"base URL {url!r} (--base-url, OPENAI_BASE_URL or a config's base_url) is not a URL "
                        f"({exc}); e.g. http://127.0.0.1:8000/v1") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"base URL {url!r} (--base-url, OPENAI_BASE_URL or a config's base_url) is not an http(s) "
                        "URL with a host; e.g. http://127.0.0.1:8000/v1")
    return url


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
    urls = tuple(check_base_url(u) for u in base_url or ())
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
