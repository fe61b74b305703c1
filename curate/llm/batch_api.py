"""The OpenAI Batch API through the official ``openai`` client: submit request files, poll, fetch.

``submit(paths, config)`` uploads each Batch API input file (``purpose="batch"``) and creates a
batch for ``/v1/chat/completions``; ``status(ids, config)`` reads them back; ``fetch(id, out,
config)`` writes the output file (and the error file's lines after it) to ``out``, ready for
``curate STAGE ... --batch-in out``. The endpoint and key come from the same options as every LLM
stage (``--base-url``/``OPENAI_BASE_URL``, ``--api-key``/``OPENAI_API_KEY``), so a batch goes to
the same server the live path would use.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import orjson

from curate.errors import StageStopped, UserError
from curate.llm.batch import URL
from curate.llm.config import EngineConfig

DONE = ("completed", "failed", "expired", "cancelled")


def client(config: EngineConfig):
    from openai import OpenAI

    if not config.has_endpoint:
        raise UserError("the Batch API needs an endpoint: set OPENAI_API_KEY (or --base-url/--api-key)")
    return OpenAI(base_url=config.base_url, api_key=config.api_key or "EMPTY", max_retries=3,
                  timeout=config.timeout)


def _call(config: EngineConfig, what: str, fn, *args, **kw):
    """Call the client and turn its errors into one clear line (the key redacted)."""
    import openai

    try:
        return fn(*args, **kw)
    except openai.APIStatusError as exc:
        raise StageStopped(config.redact(f"{what}: the endpoint answered HTTP {exc.status_code}: {exc.message}")) from None
    except openai.APIConnectionError as exc:
        raise StageStopped(config.redact(f"{what}: cannot reach {config.base_url or 'api.openai.com'} "
                                         f"({exc.__cause__ or exc})")) from None


def _check_file(path: Path) -> int:
    if not path.is_file():
        raise UserError(f"{path}: batch request file not found")
    n = 0
    with open(path, "rb") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
                ok = isinstance(rec, dict) and rec.get("custom_id") and rec.get("url") == URL and "body" in rec
            except orjson.JSONDecodeError:
                ok = False
            if not ok:
                raise UserError(f"{path}:{i}: not a Batch API request line for {URL} (written by --batch-out?)")
            n += 1
    if not n:
        raise UserError(f"{path}: no requests in the file")
    return n


def submit(paths: Iterable[str | Path], config: EngineConfig, metadata: dict[str, str] | None = None) -> list[dict]:
    """Upload each file and create its batch; return ``[{"file", "requests", "batch_id", "status"}]``."""
    paths = [Path(p) for p in paths]
    counts = [_check_file(p) for p in paths]
    c = client(config)
    out = []
    for path, n in zip(paths, counts):
        with open(path, "rb") as fh:
            up = _call(config, f"upload {path}", c.files.create, file=(path.name, fh), purpose="batch")
        kw: dict[str, Any] = {"input_file_id": up.id, "endpoint": URL, "completion_window": "24h"}
        if metadata:
            kw["metadata"] = metadata
        b = _call(config, f"create a batch for {path}", c.batches.create, **kw)
        out.append({"file": str(path), "requests": n, "input_file_id": up.id, "batch_id": b.id, "status": b.status})
    return out


def status(ids: Iterable[str], config: EngineConfig) -> list[dict]:
    c = client(config)
    out = []
    for bid in ids:
        b = _call(config, f"batch {bid}", c.batches.retrieve, bid)
        counts = b.request_counts
        out.append({"batch_id": b.id, "status": b.status, "output_file_id": b.output_file_id,
                    "error_file_id": b.error_file_id,
                    "requests": {"total": counts.total, "completed": counts.completed, "failed": counts.failed}
                    if counts else None})
    return out


def fetch(batch_id: str, out: str | Path, config: EngineConfig, wait: float = 0.0, poll: float = 10.0) -> dict:
    """Write the batch's results (output lines, then error lines) to ``out``; with ``wait`` seconds,
    poll until the batch is done first. Returns the batch's status and the number of lines written."""
    from curate import io

    c = client(config)
    deadline = time.monotonic() + wait
    while True:
        b = _call(config, f"batch {batch_id}", c.batches.retrieve, batch_id)
        if b.status in DONE or time.monotonic() >= deadline:
            break
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    if b.status not in DONE:
        raise UserError(f"batch {batch_id} is {b.status}; fetch it when it is completed (or add --wait SECONDS)")
    chunks = []
    for fid in (b.output_file_id, b.error_file_id):
        if fid:
            data = _call(config, f"download {fid}", c.files.content, fid).content
            chunks.append(data if data.endswith(b"\n") or not data else data + b"\n")
    body = b"".join(chunks)
    if not body:
        raise UserError(f"batch {batch_id} is {b.status} with no output file (errors: {b.errors})")
    io.write_bytes(Path(out), body)
    return {"batch_id": batch_id, "status": b.status, "lines": body.count(b"\n"), "out": str(out)}
