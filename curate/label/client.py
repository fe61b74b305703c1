"""Connecting to Argilla, and turning the SDK's and httpx's exceptions into messages a user can act on.

The API key is only ever handed to the SDK: it is never printed, logged or written, and it is
scrubbed from any error text that passes through here.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from typing import Iterator

import httpx

from curate.errors import UserError

URL_ENV, KEY_ENV = "ARGILLA_API_URL", "ARGILLA_API_KEY"
DEFAULT_TIMEOUT = 60


class ArgillaConnectionError(UserError):
    """The server cannot be reached, rejected the key, or refused a request."""


def _settings_hint() -> str:
    return (f"Pass --api-url and --api-key, or set {URL_ENV} (e.g. http://localhost:6900) and {KEY_ENV} "
            "(your key: Argilla UI -> My settings)")


def _scrub(text: str, secret: str | None) -> str:
    if secret:
        text = text.replace(secret, "***")
    return text[:600]


@contextlib.contextmanager
def argilla_errors(api_url: str, api_key: str | None = None, doing: str = "talking to Argilla") -> Iterator[None]:
    """Re-raise SDK / httpx failures as :class:`ArgillaConnectionError` with what to do next."""
    from argilla._exceptions import (ArgillaAPIError, ArgillaCredentialsError, ArgillaError, ForbiddenError,
                                     NotFoundError, UnauthorizedError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # the SDK warns on every "not found" lookup
            yield
    except ArgillaConnectionError:
        raise
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise ArgillaConnectionError(
            f"cannot reach the Argilla server at {api_url} ({_scrub(str(exc), api_key) or type(exc).__name__}). "
            f"Is it running, and is the URL right? {_settings_hint()}.") from None
    except (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise ArgillaConnectionError(
            f"the Argilla server at {api_url} stopped answering while {doing} ({type(exc).__name__}). "
            "Check that it is healthy, then run the same command again: pushing is idempotent.") from None
    except (ArgillaCredentialsError, UnauthorizedError):
        raise ArgillaConnectionError(
            f"the Argilla server at {api_url} rejected the API key. Copy your key from the Argilla UI "
            f"(My settings) into {KEY_ENV} or --api-key.") from None
    except ForbiddenError:
        raise ArgillaConnectionError(
            f"your Argilla user may not do this while {doing}: creating datasets and reading every "
            "annotator's answers needs an owner or admin key of that workspace.") from None
    except NotFoundError as exc:
        raise ArgillaConnectionError(f"not found on {api_url} while {doing}: {_scrub(str(exc), api_key)}") from None
    except ArgillaAPIError as exc:
        raise ArgillaConnectionError(
            f"the Argilla server refused a request while {doing}: {_scrub(str(exc), api_key)}") from None
    except httpx.HTTPStatusError as exc:
        code = exc.response.status_code
        if code == 401:
            raise ArgillaConnectionError(
                f"the Argilla server at {api_url} rejected the API key. Copy your key from the Argilla UI "
                f"(My settings) into {KEY_ENV} or --api-key.") from None
        if code == 403:
            raise ArgillaConnectionError(
                f"your Argilla user may not do this while {doing}: an owner or admin key is needed.") from None
        raise ArgillaConnectionError(
            f"the Argilla server answered HTTP {code} while {doing}: {_scrub(exc.response.text, api_key)}") from None
    except httpx.HTTPError as exc:
        raise ArgillaConnectionError(
            f"HTTP error while {doing} at {api_url}: {type(exc).__name__}: {_scrub(str(exc), api_key)}") from None
    except ArgillaError as exc:
        raise ArgillaConnectionError(f"Argilla error while {doing}: {_scrub(str(exc), api_key)}") from None
    except json.JSONDecodeError as exc:   # something else answers at that URL
        raise ArgillaConnectionError(
            f"{api_url} answered with something that is not Argilla's JSON while {doing} "
            f"({type(exc).__name__}). Is this the Argilla server's base URL? {_settings_hint()}.") from None


def resolve(api_url: str | None = None, api_key: str | None = None) -> tuple[str, str]:
    """The server URL and key from the arguments, else the environment; a clear error when missing."""
    url = (api_url or os.environ.get(URL_ENV) or "").strip().rstrip("/")
    key = (api_key or os.environ.get(KEY_ENV) or "").strip()
    if not url:
        raise UserError(f"no Argilla server given. {_settings_hint()}.")
    if not url.startswith(("http://", "https://")):
        raise UserError(f"{URL_ENV}/--api-url must start with http:// or https://, got {url!r}.")
    if not key:
        raise UserError(f"no Argilla API key given for {url}. {_settings_hint()}.")
    return url, key


def connect(api_url: str | None = None, api_key: str | None = None, timeout: int = DEFAULT_TIMEOUT):
    """An ``argilla.Argilla`` client, checked against the server (``/me``) so that errors surface here."""
    import argilla as rg
    url, key = resolve(api_url, api_key)
    with argilla_errors(url, key, "connecting"):
        # one plain request first: the SDK retries a refused connection with backoff for ~15 s
        status = httpx.get(f"{url}/api/v1/status", timeout=10)
        if status.status_code != 200 or "json" not in status.headers.get("content-type", ""):
            raise ArgillaConnectionError(
                f"{url} does not answer like an Argilla server (HTTP {status.status_code} on /api/v1/status). "
                f"Is this the server's base URL? {_settings_hint()}.")
        client = rg.Argilla(api_url=url, api_key=key, timeout=timeout)
        client.me  # noqa: B018 - validates the key
    return client


def client_url(client) -> str:
    return str(getattr(client, "api_url", "") or client.http_client.base_url)


def client_errors(client, doing: str):
    """:func:`argilla_errors` for an existing client (its key is scrubbed from messages)."""
    return argilla_errors(client_url(client), getattr(client, "api_key", None), doing)
