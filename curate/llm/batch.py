"""OpenAI Batch API files: write request JSONL, read result JSONL.

Input lines are ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``; the
``custom_id`` is the request's cache key (a hash of the body), so results can be merged back in any
order and land in the same cache the live path reads. Files are split at 50,000 requests or 200 MB
(the Batch API limits) and written atomically.

Result lines are ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``;
a line with an error or a non-200 status becomes a stored batch error (the stage quarantines it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import orjson

from curate.errors import UserError
from curate.io.files import require_file
from curate.llm.cache import Cache, Reply

URL = "/v1/chat/completions"


def batch_line(key: str, body: dict[str, Any]) -> bytes:
    return orjson.dumps({"custom_id": key, "method": "POST", "url": URL, "body": body}) + b"\n"


def part_paths(path: Path, n: int) -> list[Path]:
    if n <= 1:
        return [path]
    return [path.with_name(f"{path.stem}-{i:03d}{path.suffix}") for i in range(1, n + 1)]


def write_requests(path: str | Path, items: Iterable[tuple[str, dict[str, Any]]],
                   max_requests: int = 50_000, max_bytes: int = 200_000_000) -> list[Path]:
    """Write ``(custom_id, body)`` pairs as Batch API input, split by count and size; return the files."""
    path = Path(path)
    parts: list[list[bytes]] = [[]]
    size = 0
    seen: set[str] = set()
    for key, body in items:
        if key in seen:
            continue
        seen.add(key)
        line = batch_line(key, body)
        if parts[-1] and (len(parts[-1]) >= max_requests or size + len(line) > max_bytes):
            parts.append([])
            size = 0
        parts[-1].append(line)
        size += len(line)
    if not parts[-1]:  # nothing left to submit: remove files of an earlier run so nobody submits them twice
        for p in [path, *path.parent.glob(f"{path.stem}-[0-9][0-9][0-9]{path.suffix}")]:
            p.unlink(missing_ok=True)
        return []
    from curate import io  # polars comes with it: imported only when batch files are written

    paths = part_paths(path, len(parts))
    for p, lines in zip(paths, parts):
        io.write_bytes(p, b"".join(lines))
    # remove stale parts of an earlier, larger write so nobody submits them twice
    stale = [path] if len(parts) > 1 else []
    stale += list(path.parent.glob(f"{path.stem}-[0-9][0-9][0-9]{path.suffix}"))
    for p in stale:
        if p not in paths:
            p.unlink(missing_ok=True)
    return paths


def reply_from_body(body: dict[str, Any], origin: str = "batch") -> Reply:
    """A :class:`Reply` from a chat.completion JSON body (live or from a batch result).

    Raises ValueError for a body that is not a chat completion (no message, content that is not
    text): the caller retries it or records it as an error, never caches it."""
    choices = body.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    message = choice.get("message") if isinstance(choice, dict) else None
    if not isinstance(message, dict):
        raise ValueError("the reply has no message")
    text = message.get("content")
    if isinstance(text, list):  # content parts, as some servers send them
        if not all(isinstance(p, dict) and isinstance(p.get("text", ""), str) for p in text):
            raise ValueError("the reply's content parts are not text")
        text = "".join(p.get("text", "") for p in text)
    if text is None:
        text = message.get("refusal") or ""
    if not isinstance(text, str):
        raise ValueError(f"the reply's content is {type(text).__name__}, not text")
    finish = choice.get("finish_reason")
    usage = body.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    return Reply(text=text, finish_reason=finish if isinstance(finish, str) or finish is None else str(finish),
                 prompt_tokens=_token_count(usage.get("prompt_tokens")),
                 completion_tokens=_token_count(usage.get("completion_tokens")), origin=origin)


def _token_count(value: Any) -> int:
    """A usage figure as the server gave it, or 0 when it is not a plausible token count (a string,
    a negative number, a float past what any request holds): usage only feeds the cost report."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 2**53:
        return 0
    return int(value)


def merge_results(paths: Iterable[str | Path], cache: Cache, model: str | None = None) -> dict[str, int]:
    """Store every result of Batch API output/error files into ``cache``; count replies and errors."""
    counts = {"replies": 0, "errors": 0, "lines": 0}
    if cache.path is None:
        raise UserError("--batch-in needs the reply cache (do not combine it with --no-cache)")
    for path in paths:
        path = Path(path)
        require_file(path, what="batch results file")
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                counts["lines"] += 1
                try:
                    rec = orjson.loads(raw)
                    key = rec["custom_id"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    raise UserError(f"{path}:{n}: not a Batch API result line (no custom_id)") from None
                if not isinstance(key, str) or not key:
                    raise UserError(f"{path}:{n}: not a Batch API result line (custom_id is not a string)")
                response = rec.get("response")
                response = response if isinstance(response, dict) else {}
                status = response.get("status_code")
                body = response.get("body")
                error = rec.get("error")
                reply = None
                if not error and status == 200 and isinstance(body, dict) and body.get("choices"):
                    try:
                        reply = reply_from_body(body)
                    except ValueError as exc:
                        error = f"malformed reply body: {exc}"
                if reply is not None:
                    model_name = body.get("model")
                    cache.put(key, model_name if isinstance(model_name, str) else model or "", reply)
                    counts["replies"] += 1
                else:
                    if isinstance(error, dict):
                        msg = f"{error.get('code') or 'error'}: {error.get('message') or ''}".strip()
                    elif error:
                        msg = str(error)
                    else:
                        detail = (body or {}).get("error") if isinstance(body, dict) else body
                        if isinstance(detail, dict):
                            detail = detail.get("message")
                        msg = f"HTTP {status}: {detail or 'no reply'}"
                    cache.put_error(key, f"batch {path.name}:{n}: {msg}")
                    counts["errors"] += 1
    return counts
