"""The LLM engine every LLM stage uses (translate, localize, reflect, judge, generate).

Usage::

    from curate.llm import Engine, Request, Invalid, resolve

    class Verdict(pydantic.BaseModel):
        score: int
        rationale: str

    def check(v: Verdict, reply) -> Verdict:          # optional extra checks
        if not 1 <= v.score <= 5:
            raise Invalid("score must be 1-5")       # fed back to the model, then retried
        return v

    engine = Engine(resolve(base_url=..., model=..., concurrency=32), description="judge")
    results = engine.run([Request(key=row_id, messages=[...], params={"temperature": 0},
                                  schema=Verdict, validate=check, data=row) for ...])
    for r in results:            # same order as the requests
        if r.ok: use(r.value)    # a Verdict
        else: quarantine(r.data, code=r.code, reason=r.error, raw=r.text)
    report["llm"] = engine.report()                  # requests, retries, tokens, cost
    if engine.batch_files: print(engine.batch_notice("judge"))

What it does for you:

* **Endpoint**: the official ``openai`` AsyncOpenAI client (one per server; the body serialized once
  and POSTed with the client's ``post``; connections spread over pools of 2), any OpenAI-compatible server
  (``--base-url``/``--model``/``--api-key`` or ``OPENAI_BASE_URL``/``OPENAI_API_KEY``/config file;
  :func:`resolve`). Click commands get every option at once with
  :func:`curate.llm.options.llm_options` and build the config with
  :func:`curate.llm.options.config_from_options` (pass ``default_batch_out=out_dir / "batch" /
  "<stage>-requests.jsonl"`` so a machine without an endpoint gets Batch API files), and print the
  result with :func:`curate.llm.options.echo_summary`.
* **Tests**: ``from tests.servers.openai_server import openai_server`` (a fixture: a real HTTP
  server on 127.0.0.1; set ``openai_server.handler = fn(request_json) -> str | dict | Reply``,
  queue faults with ``openai_server.script(Reply(429, {"Retry-After": "1"}), ...)``, assert on
  ``openai_server.count`` / ``.requests``); build configs with ``resolve(base_url=server.url,
  api_key="test", cache_path=tmp_path / "cache.sqlite", progress=False)``.
* **Concurrency** bounded by ``concurrency`` (global, over every server); **retries** with
  exponential backoff on 5xx, timeouts, connection errors and malformed bodies (``max_retries``); on
  429 it honours ``Retry-After``/``retry-after-ms``, pauses every worker, and keeps trying for up to
  ``rate_limit_wait`` seconds (so sustained rate limits do not lose rows). A per-request timeout
  (``timeout``, tightened to 8x the 95th percentile latency once 20 replies were seen, at least 3 s,
  so a hung request does not hold a slot for minutes); a request budget ``max_requests``.
* **Fleet**: ``base_url`` may be a list (``--base-url`` repeated): each request goes to the least
  loaded healthy server; ``server_fail_streak`` connection errors/5xx/timeouts in a row take a server
  out for ``server_cooldown`` seconds (doubling while it keeps failing), then it is tried again.
* **Fail fast**: when ``fail_fast`` (K, default 20) requests in a row fail the same way (replies
  failing the checks, one HTTP status, context length exceeded, timeouts, unreachable), the run stops
  with :class:`curate.errors.StageStopped` (exit code 4) naming the cause and the reply that shows it;
  401/403/404 and "model not found" stop at once. Everything answered so far is cached.
* **Budget**: retries and fix-ups together may send at most ``extra_budget`` (25%) of the first
  round's requests (at least ``extra_min``); 429 waits are not counted. ``run(requests, extra=True)``
  marks a stage's later round. ``engine.report()["extra_requests"]`` states it.
* **Cache**: every reply is committed to SQLite (WAL) the moment it is read, before any check or
  parse, keyed by a hash of the full request body (model, messages, params), so a re-run makes zero
  requests and a ``kill -9`` repeats at most the requests in flight. Failed requests are never
  cached. The validator runs on cached replies too; with ``retry_failed`` replies that fail it are
  asked again. Checks run in a worker thread, off the event loop.
* **Structured output**: ``schema`` (pydantic) and/or ``validate`` (``params={"response_format":
  response_format(Model)}`` also asks the server for it; ``response_format=False`` /
  ``--no-response-format`` never sends it, and a server that rejects it gets requests without it from
  then on, remembered in the cache); a rejected reply is retried ``max_fix`` times with the error fed
  back as a user turn, then the result fails with ``code="invalid"`` and the raw reply in ``text``.
* **Batch API**: with ``batch_out`` set, or with no endpoint configured, uncached requests are
  written as Batch API input (``custom_id`` = the cache key) and their results come back with
  ``code="batch"``; ``batch_in`` files are merged into the cache (any order; error lines become
  ``code="batch_error"`` results) before the run, so the normal path picks them up.
* **Accounting and progress**: ``engine.report()`` and a progress bar with rate and ETA.
* **Secrets**: the API key is never printed, logged, stored in the cache or in batch files; error
  messages are redacted (:meth:`EngineConfig.redact`).
"""

from curate.llm.cache import Cache, Reply, request_key
from curate.llm.config import EngineConfig, resolve
from curate.llm.engine import Engine, Invalid, Request, Result, extract_json, response_format

__all__ = ["Cache", "Engine", "EngineConfig", "Invalid", "Reply", "Request", "Result", "extract_json",
           "request_key", "resolve", "response_format"]
