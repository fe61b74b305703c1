"""The engine: run many chat-completion requests concurrently, cached, retried and validated.

See :mod:`curate.llm` for the API summary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import math
import random
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import orjson

from curate.errors import StageStopped, UserError
from curate.llm import batch as batchfile
from curate.llm.cache import Cache, Reply, request_key
from curate.llm.config import EngineConfig

FIX_PROMPT = ("Your previous reply was rejected: {error}\n"
              "Reply again, following the original instructions exactly, with the corrected answer only.")


class Invalid(Exception):
    """Raised by a validator to reject a reply; the message is fed back to the model on retry.

    ``partial=True`` says the reply was partly usable (e.g. 15 of 16 packed fields passed and the
    caller kept them): the fail-fast breaker does not count it as a failed reply.
    """

    def __init__(self, message: str = "", partial: bool = False):
        super().__init__(message)
        self.partial = partial


@dataclasses.dataclass
class Request:
    """One unit of work: a conversation to complete and the contract its reply must meet.

    * ``key``       the caller's id for it (unique within a run), e.g. ``f"{row_id}:{part}"``
    * ``messages``  OpenAI chat messages (``[{"role": ..., "content": ...}, ...]``)
    * ``params``    request parameters beside model and messages (temperature, max_tokens,
      response_format, seed, ...); they are part of the cache key
    * ``schema``    optional pydantic model: the reply is parsed as JSON (code fences and prose
      around the object are tolerated) and validated into an instance
    * ``validate``  optional ``validate(value, reply) -> value``: ``value`` is the schema instance
      (or the reply text without a schema), ``reply`` the :class:`Reply` (``.text``,
      ``.finish_reason``); return the accepted value or raise :class:`Invalid` with a message
    * ``data``      anything the caller wants back on the :class:`Result`
    * ``model``     optional per-request model (defaults to the engine's)
    * ``max_fix``   optional per-request number of fix-up rounds (defaults to the engine's)
    """

    key: str
    messages: list[dict[str, Any]]
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    schema: Any = None
    validate: Callable[[Any, Reply], Any] | None = None
    data: Any = None
    model: str | None = None
    max_fix: int | None = None  # fix-up rounds for this request (default: the engine's max_fix)


@dataclasses.dataclass
class Result:
    """The outcome of one :class:`Request`.

    ``ok`` with ``value`` (validated), or not ok with ``code`` and ``error``:
    ``invalid`` (every attempt failed validation; ``text`` is the last raw reply), ``http`` (the
    endpoint kept failing or refused the request), ``budget`` (not sent: ``max_requests`` reached),
    ``batch`` (written to a Batch API file, answer pending), ``batch_error`` (the Batch API
    returned an error for it).
    """

    key: str
    ok: bool
    value: Any = None
    text: str | None = None
    code: str = "ok"
    error: str | None = None
    attempts: int = 0  # model replies seen (1 + fix-up rounds)
    cached: bool = False  # every reply came from the cache
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    request: Request | None = dataclasses.field(default=None, repr=False)

    @property
    def data(self) -> Any:
        return self.request.data if self.request is not None else None


class _Failed(Exception):
    def __init__(self, code: str, error: str):
        super().__init__(error)
        self.code, self.error = code, error


class _Fatal(Exception):
    pass


class _NoBudget(Exception):
    """An extra request (retry or fix-up) that the budget does not allow."""


_CONTEXT = re.compile(r"context.length|maximum context|context window|too many tokens|prompt is too long", re.I)
_RF_REJECTED = re.compile(r"response.format|json.schema|json_object|structured output|guided", re.I)
_KINDS = {"invalid": "the model's replies fail the stage's checks",
          "context_length": "the requests exceed the model's context length",
          "timeout": "requests time out", "connection": "the server cannot be reached",
          "malformed": "the server sends malformed response bodies"}


def _describe(kind: str) -> str:
    if kind.startswith("http_"):
        return f"the endpoint answers HTTP {kind[5:]}"
    return _KINDS.get(kind, kind)


@dataclasses.dataclass(eq=False)
class _Server:
    """One endpoint of the fleet, with its health."""

    url: str
    client: Any  # AsyncOpenAI
    inflight: int = 0
    sent: int = 0
    ok: int = 0
    failed: int = 0
    streak: int = 0  # connection errors / 5xx / timeouts in a row
    outs: int = 0  # times taken out in a row (the cooldown doubles)
    down_until: float = 0.0


_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """Parse the JSON value in a reply: bare, inside a code fence, or the outermost ``{...}``/``[...]``."""
    text = text.strip()
    candidates = [text]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    for open_, close in (("{", "}"), ("[", "]")):
        i, j = text.find(open_), text.rfind(close)
        if 0 <= i < j:
            candidates.append(text[i:j + 1])
    err = None
    for cand in candidates:
        try:
            return orjson.loads(cand)
        except orjson.JSONDecodeError as exc:
            err = exc
        try:
            return json.loads(cand, strict=False)  # tolerates raw newlines inside strings
        except json.JSONDecodeError:
            pass
    raise Invalid(f"the reply is not valid JSON ({err}); reply with one JSON object only")


def response_format(model, strict: bool = False) -> dict[str, Any]:
    """``params={"response_format": response_format(MyModel)}``: OpenAI structured outputs for a pydantic
    model (servers without json_schema support may need ``{"type": "json_object"}`` instead)."""
    return {"type": "json_schema",
            "json_schema": {"name": model.__name__, "schema": model.model_json_schema(), "strict": strict}}


def _schema_error(exc) -> str:
    parts = []
    for e in exc.errors()[:8]:
        loc = ".".join(str(p) for p in e.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {e.get('msg')}")
    return "the JSON does not match the required shape: " + "; ".join(parts)


def _retry_after(headers) -> float | None:
    if headers is None:
        return None
    for name, div in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / div)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
            except (TypeError, ValueError):
                return None
    return None


@dataclasses.dataclass
class Stats:
    requests: int = 0  # HTTP requests sent (including retries)
    replies_live: int = 0
    replies_cached: int = 0
    retries: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    timeouts: int = 0
    fix_rounds: int = 0  # re-asks with a validation error fed back
    prompt_tokens: int = 0  # live
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    extra_requests: int = 0  # retries and fix-ups sent (429 waits excluded): the extra budget's meter
    first_round: int = 0  # uncached first-round requests planned (the extra budget's base)
    servers_taken_out: int = 0
    response_format_dropped: bool = False
    batch_merged: int = 0
    batch_merge_errors: int = 0
    elapsed: float = 0.0
    outcomes: Counter = dataclasses.field(default_factory=Counter)
    causes: Counter = dataclasses.field(default_factory=Counter)  # "code: error" of failed results


def extra_allowance(share: float | None, minimum: int, first_round: int) -> float:
    """The retry/fix-up budget after ``first_round`` uncached first-round requests: ``share`` of
    them (``--extra-budget``), at least ``minimum`` (inf: no limit)."""
    if share is None or math.isinf(share):
        return math.inf
    return max(minimum, math.floor(share * first_round))


class SharedBudget(Protocol):
    """Budgets that several engines (in several processes) draw from, e.g. a Ray actor's counters.
    Each call is atomic on the holder's side."""

    async def add_first_round(self, n: int) -> None:
        """``n`` more uncached first-round requests (the retry/fix-up budget grows with them)."""

    async def take_extra(self, first_round: int) -> tuple[bool, float]:
        """Add ``first_round`` requests, then take one extra request if the budget allows it:
        (taken, the budget now)."""

    async def lease(self, n: int) -> int:
        """Up to ``n`` requests of ``max_requests`` (0: spent)."""

    async def give_back(self, n: int) -> None:
        """Return ``n`` leased requests that were not sent."""


class Engine:
    """Run :class:`Request` lists against OpenAI-compatible endpoints (or into Batch API files).

    ``Engine(config).run(requests) -> list[Result]`` (same order as ``requests``; the sync
    wrapper), ``await engine.arun(requests)`` inside an event loop (e.g. in a Ray actor: the engine is
    a plain class and holds no global state). ``engine.report()`` gives the accounting for a
    stage's report.json; ``engine.batch_files`` the Batch API files written by the last run.

    ``run(requests, extra=True)`` marks a later round of a stage (re-asking what failed): its
    requests count against the retry/fix-up budget, like transport retries and fix-up rounds.

    ``shared``: budgets held for many engines at once (the actors of a Ray run, see
    :class:`SharedBudget`): the retry/fix-up budget is then a share of the first round of all of
    them, and ``max_requests`` the requests all of them send. Without it (the default) the engine
    counts alone.
    """

    def __init__(self, config: EngineConfig | None = None, *, description: str = "llm",
                 shared: SharedBudget | None = None):
        self.config = config or EngineConfig()
        self.description = description
        self.stats = Stats()
        self.shared = shared
        self._told_first_round = 0  # first-round requests already added to the shared count
        self._lease = 0  # requests granted by the shared --max-requests budget, not sent yet
        self._shared_allowed = 0  # the shared extra budget when last asked
        self.batch_files: list[Path] = []
        self.batch_pending = 0
        # Batch API requests accumulate over every run of this engine (a stage may run it block by
        # block); each run rewrites the request files with everything pending so far.
        self._pending_batch: list[tuple[str, dict]] = []
        self._cache: Cache | None = None
        self._lock = threading.Lock()
        self._servers: list[_Server] = []
        self._streak: tuple[str | None, int] = (None, 0)
        self._streak_evidence: tuple[str, str] = ("", "")
        self._stop: str | None = None
        self._latencies: list[float] = []
        self._loop_lags: list[float] = []
        self._callbacks: list[tuple[float, float]] = []  # (wall, CPU) seconds per loop callback (CURATE_LOOP_STATS=1)
        self._rf_off = not self.config.response_format

    # ---- public -------------------------------------------------------------------------
    @property
    def batch_mode(self) -> bool:
        """True when requests go to Batch API files instead of an endpoint."""
        return self.config.batch_out is not None or not self.config.has_endpoint

    def run(self, requests: Sequence[Request], on_result: Callable[[Result], None] | None = None,
            extra: bool = False) -> list[Result]:
        """Synchronous facade over :meth:`arun` (usable with or without a running event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(requests, on_result, extra))
        box: dict[str, Any] = {}

        def target():
            try:
                box["r"] = asyncio.run(self.arun(requests, on_result, extra))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["e"] = exc
        t = threading.Thread(target=target)
        t.start()
        t.join()
        if "e" in box:
            raise box["e"]
        return box["r"]

    async def arun(self, requests: Iterable[Request], on_result: Callable[[Result], None] | None = None,
                   extra: bool = False) -> list[Result]:
        """Run ``requests``: a list, or any iterable (e.g. a generator making them while earlier
        ones are in flight: workers pull the next request when they are free)."""
        cfg = self.config
        streaming = not isinstance(requests, Sequence)
        if not streaming:
            keys = [r.key for r in requests]
            if len(set(keys)) != len(keys):
                dup = next(k for k, n in Counter(keys).items() if n > 1)
                raise ValueError(f"request keys must be unique within a run; {dup!r} repeats")
        if self.batch_mode and cfg.batch_out is None:
            raise UserError("no LLM endpoint configured and no Batch API output file given "
                            "(set --base-url/OPENAI_API_KEY, or --batch-out FILE)")
        if self._stop:
            raise StageStopped(self._stop)
        from curate.progress import bar

        t0 = time.perf_counter()
        self._cache = Cache(cfg.cache_path)
        self._pause_until = 0.0
        self._servers = []  # made on the first request sent (a fully cached run never imports openai)
        self._pool = None  # made on the first reply to check
        self._switch = sys.getswitchinterval()
        results: dict[int, Result] = {}
        try:
            if cfg.batch_in:
                counts = batchfile.merge_results(cfg.batch_in, self._cache, cfg.model)
                self.stats.batch_merged += counts["replies"]
                self.stats.batch_merge_errors += counts["errors"]
            if not self._rf_off and not self.batch_mode and self._cache.get_meta(self._rf_meta_key()):
                self._rf_off = self.stats.response_format_dropped = True  # learnt on an earlier run
            with bar(self.description, total=None if streaming else len(requests), enabled=cfg.progress) as progress:
                def finish(i: int, res: Result) -> None:
                    results[i] = res
                    self.stats.outcomes[res.code] += 1
                    if not res.ok and res.error and res.code not in ("batch", "budget"):
                        self.stats.causes[f"{res.code}: {res.error[:240]}"] += 1
                    progress.advance(1)
                    if on_result is not None:
                        on_result(res)

                await self._pump(requests, streaming, extra, finish)
            self.batch_files = []
            self.batch_pending = len({k for k, _ in self._pending_batch})
            if self.batch_mode:
                self.batch_files = batchfile.write_requests(cfg.batch_out, self._pending_batch,
                                                            cfg.batch_max_requests, cfg.batch_max_bytes)
        finally:
            if self.shared is not None:
                await self._settle_shared()
            sys.setswitchinterval(self._switch)
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            for server in self._servers:
                await server.client.close()
            self._cache.close()
            self.stats.elapsed += time.perf_counter() - t0
        return [results[i] for i in sorted(results)]

    async def _pump(self, requests: Iterable[Request], streaming: bool, extra: bool,
                    finish: Callable[[int, Result], None]) -> None:
        """Run the requests: a producer thread makes them (bodies, cache keys, cache look-ups, the
        checks of cached replies, the caller's generator building its requests; the openai client is
        imported and made there on the first request to send), the workers on the event loop send
        them as they come. The loop only moves bytes: nothing it runs between two awaits takes long."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        n_workers = 1 if self.batch_mode else max(1, cfg.concurrency)
        room = threading.Semaphore(max(256, 4 * n_workers))  # the producer runs at most this far ahead
        halt = threading.Event()
        end = object()

        def put(item) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def cached_or_todo(i: int, req: Request, body: dict, key: str, reply: Reply | None):
            """("done", i, result, reply) for a request whose cached reply validates; else the work item."""
            if reply is not None:
                res = self._accept(req, reply, attempts=1)
                if res is not None:
                    return "done", i, res, reply
            elif not extra and not self.batch_mode:
                self.stats.first_round += 1
            return i, req, body, key, reply

        def source():
            if streaming:
                seen: set[str] = set()
                for i, req in enumerate(requests):
                    if req.key in seen:
                        raise ValueError(f"request keys must be unique within a run; {req.key!r} repeats")
                    seen.add(req.key)
                    body = self._body(req, req.messages)
                    key = request_key(body)
                    yield cached_or_todo(i, req, body, key, self._cache.get(key))
                return
            bodies = [self._body(r, r.messages) for r in requests]
            keys = [request_key(b) for b in bodies]
            prefetched = self._cache.get_many(keys)
            # replies already cached that validate are finished before anything is sent
            items = [cached_or_todo(i, req, bodies[i], keys[i], prefetched.get(keys[i])) for i, req in enumerate(requests)]
            if self.shared is not None:  # the other engines' budgets grow with this first round now
                asyncio.run_coroutine_threadsafe(self._tell_first_round(), loop).result()
            yield from sorted(items, key=lambda item: item[0] != "done")

        def produce() -> None:
            # requests finished from the cache go to the loop in batches: one wake-up of the loop
            # (a write to its self-pipe) per item cost more than the item's own work there
            done: list = []
            try:
                for item in source():
                    if item[0] != "done" and not self._servers and not self.batch_mode:
                        self._servers = self._make_servers()  # imports openai: off the loop, and only when needed
                    while not room.acquire(timeout=0.2):
                        if halt.is_set():
                            return
                    if halt.is_set():
                        return
                    if item[0] == "done":
                        done.append(item)
                        if len(done) >= _DONE_BATCH:
                            put(("batch", done))
                            done = []
                        continue
                    if done:
                        put(("batch", done))
                        done = []
                    put(item)
                if done:
                    put(("batch", done))
            except BaseException as exc:  # noqa: BLE001 - handed to the loop and raised there
                put(("error", exc))
            finally:
                for _ in range(n_workers):
                    put(end)

        fatal: list[BaseException] = []

        async def worker():
            while True:
                item = await queue.get()
                if item is end:
                    return
                if item[0] == "batch":
                    for _ in item[1]:
                        room.release()
                    for _, i, res, reply in item[1]:
                        self._count_reply(reply)
                        finish(i, res)
                    continue
                room.release()
                if fatal or self._stop:
                    halt.set()  # the producer stops making requests no one will send
                    continue
                if item[0] == "error":
                    raise item[1]
                i, req, body, key, reply = item
                try:
                    res = await self._process(req, body, key, reply, extra)
                except _Fatal as exc:
                    fatal.append(exc)
                    halt.set()
                    continue
                finish(i, res)

        # the producer (and the check thread) hand the GIL back to the loop within half a millisecond
        sys.setswitchinterval(min(self._switch, 0.0005))
        producer = threading.Thread(target=produce, name="curate-llm-requests", daemon=True)
        producer.start()
        watch = asyncio.ensure_future(self._watch_loop()) if not self.batch_mode else None
        declared = _declare_asyncio()
        try:
            await asyncio.gather(*(worker() for _ in range(n_workers)))
        finally:
            if declared is not None:
                declared()
            halt.set()
            if watch is not None:
                watch.cancel()
            while producer.is_alive():  # it stops at its next item; keep the loop turning meanwhile
                await asyncio.sleep(0.005)
        if fatal:
            self._stop = str(fatal[0])
        if self._stop:
            raise StageStopped(self._stop)

    async def _watch_loop(self, tick: float = 0.005) -> None:
        """Measure how late the event loop wakes up (how long anything held it) while requests fly.
        With ``CURATE_LOOP_STATS=1`` (bench/llm_stages.py) also time every callback the loop runs,
        in wall and in CPU time of the loop's thread (the CPU time leaves out the OS running other
        processes and the waits for the GIL: it is how long the callback's own work held the loop)."""
        import os

        lags = self._loop_lags
        undo = self._time_callbacks() if os.environ.get("CURATE_LOOP_STATS") == "1" else None
        try:
            while True:
                t = time.perf_counter()
                await asyncio.sleep(tick)
                lags.append(time.perf_counter() - t - tick)
                if len(lags) > 20_000:
                    del lags[:10_000]
        finally:
            if undo is not None:
                undo()

    def _time_callbacks(self) -> Callable[[], None]:
        """Time every callback of this thread's event loop (asyncio's Handle._run, wrapped while the
        engine runs); returns the function that unwraps it."""
        handle = asyncio.events.Handle
        orig = handle._run
        if getattr(orig, "curate_timer", False):  # another engine of this process times them already
            return lambda: None
        out = self._callbacks
        me = threading.get_ident()
        wall, cpu = time.perf_counter, time.thread_time

        def _run(h):
            if threading.get_ident() != me:
                return orig(h)
            w, c = wall(), cpu()
            try:
                return orig(h)
            finally:
                out.append((wall() - w, cpu() - c))

        _run.curate_timer = True
        handle._run = _run

        def undo() -> None:
            handle._run = orig
        return undo

    def extra_allowed(self) -> float:
        """How many extra requests (retries + fix-ups) the budget allows so far."""
        return extra_allowance(self.config.extra_budget, self.config.extra_min, self.stats.first_round)

    # -- budgets shared with other engines (SharedBudget)
    async def _tell_first_round(self) -> None:
        delta = self.stats.first_round - self._told_first_round
        if delta:
            self._told_first_round += delta
            await self.shared.add_first_round(delta)

    async def _shared_may_send(self) -> bool:
        """One request of the shared ``max_requests`` budget (granted in leases of ``concurrency``)."""
        while self._lease <= 0:
            got = await self.shared.lease(max(1, self.config.concurrency))
            if not got:
                return False
            self._lease += got
        self._lease -= 1
        return True

    async def _shared_may_extra(self) -> bool:
        if math.isinf(self.extra_allowed()):  # no limit: nothing to count
            return True
        delta = self.stats.first_round - self._told_first_round
        self._told_first_round += delta
        ok, self._shared_allowed = await self.shared.take_extra(delta)
        return ok

    async def _settle_shared(self) -> None:
        """End of a run: the first round told, the unsent part of the request lease given back."""
        await self._tell_first_round()
        if self._lease:
            lease, self._lease = self._lease, 0
            await self.shared.give_back(lease)

    def report(self) -> dict[str, Any]:
        """Token, request and cost accounting (no secrets) for a stage's report.json."""
        s = self.stats
        allowed = self.extra_allowed()
        out: dict[str, Any] = {
            "endpoint": self.config.public(),
            "mode": "batch-files" if self.batch_mode else "live",
            "requests_sent": s.requests, "retries": s.retries, "rate_limited": s.rate_limited,
            "server_errors": s.server_errors, "timeouts": s.timeouts, "fix_rounds": s.fix_rounds,
            "first_round_requests": s.first_round,
            "extra_requests": {"sent": s.extra_requests, "budget": None if allowed == math.inf else int(allowed),
                               "share": None if allowed == math.inf else self.config.extra_budget, "minimum": self.config.extra_min},
            "replies_live": s.replies_live, "replies_cached": s.replies_cached,
            "tokens": {"prompt": s.prompt_tokens, "completion": s.completion_tokens,
                       "cached_prompt": s.cached_prompt_tokens, "cached_completion": s.cached_completion_tokens},
            "outcomes": dict(s.outcomes), "seconds": round(s.elapsed, 3),
            "requests_per_second": round(s.requests / s.elapsed, 2) if s.elapsed and s.requests else None,
            "response_format": "off" if not self.config.response_format else
                               ("dropped: the server rejected it" if s.response_format_dropped else "on"),
        }
        if self._loop_lags:
            lags = sorted(self._loop_lags)
            out["event_loop_lag_ms"] = {"p50": round(lags[len(lags) // 2] * 1000, 2),
                                        "p99": round(lags[int(0.99 * (len(lags) - 1))] * 1000, 2),
                                        "max": round(lags[-1] * 1000, 2), "samples": len(lags)}
        if self._callbacks:
            def stats(values: list[float]) -> dict[str, Any]:
                values = sorted(values)
                return {"p50": round(values[len(values) // 2] * 1000, 3),
                        "p99": round(values[int(0.99 * (len(values) - 1))] * 1000, 3),
                        "max": round(values[-1] * 1000, 3), "over_1ms": sum(v > 0.001 for v in values)}
            out["event_loop_callbacks_ms"] = {"callbacks": len(self._callbacks),
                                              "wall": stats([w for w, _ in self._callbacks]),
                                              "cpu": stats([c for _, c in self._callbacks])}
        if self._stop:
            out["stopped"] = self._stop
        if s.causes:
            out["failure_causes"] = [{"cause": c, "requests": n} for c, n in s.causes.most_common(5)]
        if len(self.config.base_urls) > 1:
            out["servers_taken_out"] = s.servers_taken_out
        if s.batch_merged or s.batch_merge_errors:
            out["batch_in"] = {"replies": s.batch_merged, "errors": s.batch_merge_errors}
        if self.batch_files:
            out["batch_out"] = {"files": [str(p) for p in self.batch_files], "requests": self.batch_pending}
        prices = self.config.prices()
        if prices:
            pin, pout = prices
            out["cost_usd"] = {
                "spent": round((s.prompt_tokens * pin + s.completion_tokens * pout) / 1e6, 6),
                "saved_by_cache": round((s.cached_prompt_tokens * pin + s.cached_completion_tokens * pout) / 1e6, 6),
                "price_per_1m": {"input": pin, "output": pout, "model": self.config.model},
            }
        else:
            out["cost_usd"] = None
        return out

    def batch_notice(self, stage: str = "") -> str:
        """Two lines telling the user what was written and how to get it answered."""
        if not self.batch_files:
            return ""
        files = ", ".join(str(p) for p in self.batch_files)
        why = "No LLM endpoint configured" if not self.config.has_endpoint else "Batch mode"
        cmd = f"`curate {stage} ... --batch-in FILE`" if stage else "the same command with --batch-in FILE"
        return (f"{why}: wrote {self.batch_pending} requests to {files} (OpenAI Batch API input); nothing was sent.\n"
                f"Next: `curate batch submit {self.batch_files[0]}`, then `curate batch fetch BATCH_ID -o "
                f"results.jsonl --wait 86400`, and re-run {cmd} with that file; or use a server: --base-url http://127.0.0.1:8000/v1 --model NAME "
                f"(vLLM, Ollama, llama.cpp).")

    # ---- internals ----------------------------------------------------------------------
    def _make_client(self, base_url: str | None):
        """The official ``AsyncOpenAI`` client for one server (imported on first use), with no retries
        of its own (the engine retries) and an httpx client whose connections are spread over pools of
        2: httpcore scans every connection of a pool on each request and each reply closed (an expiry
        check with two syscalls each). Measured at concurrency 64, loopback, CPU of the loop's thread
        per request: 11.4 ms with one pool of 64, 1.8 ms with pools of 8, 1.6 ms with pools of 2."""
        import httpx
        from openai import AsyncOpenAI

        cfg = self.config
        pools = max(1, math.ceil(cfg.concurrency / max(1, len(cfg.base_urls)) / 2))
        http = httpx.AsyncClient(transport=_PoolsTransport(pools, tls=not (base_url or "").startswith("http://")),
                                 timeout=cfg.timeout, follow_redirects=True)
        return AsyncOpenAI(base_url=base_url, api_key=cfg.api_key or "EMPTY", max_retries=0, timeout=cfg.timeout,
                           http_client=http)

    def _make_servers(self) -> list[_Server]:
        """The clients, one per server. Called in the producer thread: it also imports what the
        first request would import on the event loop (anyio's asyncio backend and streams, ~40 ms),
        then freezes the objects alive so far (gc.freeze: the thousands of objects openai, httpx and
        pydantic leave behind are not walked again by every full collection, which held the loop
        for up to 150 ms at a time)."""
        import gc

        import anyio._backends._asyncio  # noqa: F401
        import anyio.streams.memory  # noqa: F401
        import anyio.streams.stapled  # noqa: F401
        import anyio.streams.tls  # noqa: F401

        urls = self.config.base_urls or (None,)
        servers = [_Server(url or "https://api.openai.com/v1", self._make_client(url)) for url in urls]
        gc.freeze()
        return servers

    def _rf_meta_key(self) -> str:
        return f"rejects_response_format:{self.config.base_url or 'openai'}"

    def _body(self, req: Request, messages: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"model": req.model or self.config.model, "messages": messages, **req.params}
        if self._rf_off:
            body.pop("response_format", None)
        return body

    def _count_reply(self, reply: Reply) -> None:
        s = self.stats
        if reply.cached:
            s.replies_cached += 1
            s.cached_prompt_tokens += reply.prompt_tokens
            s.cached_completion_tokens += reply.completion_tokens
        else:
            s.replies_live += 1
            s.prompt_tokens += reply.prompt_tokens
            s.completion_tokens += reply.completion_tokens

    def _check(self, req: Request, reply: Reply) -> Any:
        value: Any = reply.text
        if req.schema is not None:
            from pydantic import ValidationError

            data = extract_json(reply.text)
            try:
                value = req.schema.model_validate(data)
            except ValidationError as exc:
                raise Invalid(_schema_error(exc)) from None
        if req.validate is not None:
            value = req.validate(value, reply)
        return value

    async def _check_off_loop(self, req: Request, reply: Reply) -> Any:
        if req.schema is None and req.validate is None:
            return self._check(req, reply)
        if self._pool is None:
            # checks run in one worker thread; a short switch interval keeps the event loop from
            # waiting more than ~0.5 ms for the GIL while a check runs
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="curate-llm-check")
            sys.setswitchinterval(min(self._switch, 0.0005))
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._check, req, reply)

    def _accept(self, req: Request, reply: Reply, attempts: int) -> Result | None:
        try:
            value = self._check(req, reply)
        except Invalid:
            return None
        return Result(req.key, True, value=value, text=reply.text, attempts=attempts, cached=reply.cached,
                      finish_reason=reply.finish_reason, prompt_tokens=reply.prompt_tokens,
                      completion_tokens=reply.completion_tokens, request=req)

    # -- fail fast: a window of K requests failing the same way stops the run
    def _outcome(self, kind: str | None, error: str = "", evidence: str = "") -> None:
        k = self.config.fail_fast
        if kind is None:
            self._streak = (None, 0)
            return
        if kind == "connection" and k and all(s.ok == 0 and s.failed > 0 for s in self._servers):
            k = min(k, 3)  # no server ever answered and every one refused: nothing to wait for
        last, n = self._streak
        n = n + 1 if kind == last else 1
        if n == 1:
            self._streak_evidence = (error, evidence)
        self._streak = (kind, n)
        if k and n >= k and not self._stop:
            error, evidence = self._streak_evidence
            cfg = self.config
            if kind == "connection" and self.stats.replies_live == 0:
                self._stop = cfg.redact(f"cannot reach the LLM endpoint {cfg.base_url or 'api.openai.com'} ({error}); "
                                        "is the server running? Or leave --base-url unset to write Batch API files instead")
                return
            shown = cfg.redact((evidence or "")[:600]).replace("\n", "\\n")
            self._stop = cfg.redact(
                f"stopped: the last {n} requests all failed the same way: {_describe(kind)}.\n"
                f"  cause: {error[:400]}\n"
                + (f"  the reply that shows it: {shown}\n" if shown else "")
                + f"  {self.stats.replies_live} replies of this run are in the reply cache; fix the cause "
                  f"(model, prompt, --base-url, --no-response-format) and re-run: nothing answered is paid twice.")

    async def _process(self, req: Request, body: dict, key: str, reply: Reply | None, extra: bool = False) -> Result:
        cfg = self.config
        messages = req.messages
        tokens = [0, 0]
        all_cached = True
        last_text: str | None = None
        last_error = ""
        max_fix = cfg.max_fix if req.max_fix is None else req.max_fix
        if extra:
            self.stats.fix_rounds += 1  # a later round of the stage re-asks with the errors fed back
        for attempt in range(max_fix + 1):
            if attempt:
                body = self._body(req, messages)
                key = request_key(body)
                reply = self._cache.get(key)
            if reply is not None and cfg.retry_failed and await self._failed_before(req, reply):
                reply = None  # asked to re-ask for replies that did not pass last time
            if reply is None:
                err = self._cache.get_error(key)
                if err is not None and not cfg.retry_failed:
                    return Result(req.key, False, code="batch_error", error=err, attempts=attempt,
                                  text=last_text, request=req)
                if self.batch_mode:
                    self._pending_batch.append((key, body))
                    return Result(req.key, False, code="batch", attempts=attempt, text=last_text, request=req,
                                  error=f"written to the Batch API file {cfg.batch_out}; merge its results with --batch-in")
                try:
                    reply = await self._call(body, key, extra=extra or attempt > 0)
                except _NoBudget as exc:  # a fix-up or a later round of the stage: the model's replies failed
                    return Result(req.key, False, code="invalid", error=(f"{last_error}; " if last_error else "") + str(exc),
                                  attempts=attempt, text=last_text, request=req, cached=False)
                except _Failed as exc:
                    return Result(req.key, False, code=exc.code, error=exc.error, attempts=attempt,
                                  text=last_text, request=req, cached=False)
                all_cached = False
            self._count_reply(reply)
            tokens[0] += reply.prompt_tokens
            tokens[1] += reply.completion_tokens
            last_text = reply.text
            try:
                value = await self._check_off_loop(req, reply)
            except Invalid as exc:
                last_error = str(exc)
                if not reply.cached:
                    self._outcome(None if exc.partial else "invalid", last_error, reply.text)
                if attempt < max_fix and not self._stop:
                    self.stats.fix_rounds += 1
                    messages = [*messages, {"role": "assistant", "content": reply.text},
                                {"role": "user", "content": FIX_PROMPT.format(error=last_error)}]
                    continue
                break
            if not reply.cached:
                self._outcome(None)
            return Result(req.key, True, value=value, text=reply.text, attempts=attempt + 1,
                          cached=all_cached, finish_reason=reply.finish_reason, prompt_tokens=tokens[0],
                          completion_tokens=tokens[1], request=req)
        return Result(req.key, False, code="invalid", error=last_error, text=last_text,
                      attempts=max_fix + 1, cached=all_cached, prompt_tokens=tokens[0],
                      completion_tokens=tokens[1], request=req)

    async def _failed_before(self, req: Request, reply: Reply) -> bool:
        try:
            await self._check_off_loop(req, reply)
            return False
        except Invalid:
            return True

    def _backoff(self, attempt: int) -> float:
        cfg = self.config
        return min(cfg.backoff_max, cfg.backoff_base * (2 ** attempt)) * (0.5 + random.random() / 2)

    # -- the fleet: least-loaded healthy server; a failing one is taken out for a while
    async def _pick(self) -> _Server:
        if not self._servers:
            self._servers = self._make_servers()
        while True:
            now = time.monotonic()
            up = [s for s in self._servers if s.down_until <= now]
            if up:
                return min(up, key=lambda s: (s.inflight, s.sent))
            await asyncio.sleep(max(0.01, min(s.down_until for s in self._servers) - now))

    def _server_failed(self, server: _Server) -> None:
        server.failed += 1
        if server.down_until > time.monotonic():
            return  # a request sent before the server was taken out: it is out already
        server.streak += 1
        if len(self._servers) > 1 and server.streak >= self.config.server_fail_streak:
            server.down_until = time.monotonic() + self.config.server_cooldown * 2 ** min(server.outs, 5)
            server.outs += 1
            server.streak = 0
            self.stats.servers_taken_out += 1

    def _deadline(self) -> float:
        """Seconds a request may take: ``timeout``, or once enough replies were seen, 8x their 95th
        percentile (at least 3 s), so a hung request does not hold a slot for minutes."""
        lat = self._latencies
        if len(lat) < 20:
            return self.config.timeout
        p95 = sorted(lat[-200:])[int(0.95 * (min(len(lat), 200) - 1))]
        return min(self.config.timeout, max(3.0, 8 * p95))

    async def _send(self, server: _Server, body: dict[str, Any]) -> bytes:
        """POST the body through the openai client; return the reply's bytes (raises the client's
        errors, or TimeoutError past the adaptive deadline)."""
        import httpx

        # AsyncOpenAI.post is the client's documented way to call an endpoint with a body of one's
        # own: the body is serialized once by orjson, the same bytes chat.completions.create would
        # send, without its per-request walk over every message (1-3 ms a request under load)
        task = asyncio.ensure_future(server.client.post(
            "/chat/completions", cast_to=httpx.Response, content=orjson.dumps(body),
            options={"headers": {"Content-Type": "application/json"}}))
        t0 = time.monotonic()
        held = 0.0  # time this coroutine could not run (the loop or the process was held): not the server's
        try:
            while True:
                left = self._deadline() - (time.monotonic() - t0 - held)
                if left <= 0:
                    raise TimeoutError
                step = min(left, 1.0)
                t = time.monotonic()
                done, _ = await asyncio.wait({task}, timeout=step)
                if done:
                    content = task.result().content
                    self._latencies.append(time.monotonic() - t0 - held)
                    if len(self._latencies) > 400:
                        del self._latencies[:200]
                    return content
                late = time.monotonic() - t - step
                if late > _LATE:
                    # woken late: a reply written meanwhile may be waiting in the socket, unread.
                    # The stall is not counted, and the request keeps at least _GRACE seconds to be
                    # read, so a reply the server sent is never abandoned and paid for again
                    held += late
                    held = max(held, time.monotonic() - t0 - self._deadline() + _GRACE)
        finally:
            if not task.done():
                task.cancel()

    async def _call(self, body: dict[str, Any], key: str, extra: bool = False) -> Reply:
        """Send ``body`` (retrying transport failures), store the reply in the cache, return it."""
        import openai

        cfg = self.config
        attempt = 0
        waited_429 = 0.0
        after_429 = False
        last = ""
        while True:
            if self._stop:
                raise _Failed("stopped", "not sent: the run was stopped")
            now = time.monotonic()
            if self._pause_until > now:  # a 429 told everyone to wait
                await asyncio.sleep(self._pause_until - now)
            if cfg.max_requests is not None and (self.stats.requests >= cfg.max_requests if self.shared is None
                                                 else not await self._shared_may_send()):
                raise _Failed("budget", f"not sent: the request budget (--max-requests {cfg.max_requests}) "
                                        "is spent; re-run to continue (answered requests are cached)")
            counts_extra = (extra or attempt > 0) and not after_429
            if counts_extra and (self.stats.extra_requests >= self.extra_allowed() if self.shared is None
                                 else not await self._shared_may_extra()):
                if self.shared is not None and cfg.max_requests is not None:
                    self._lease += 1  # not sent after all
                allowed = self.extra_allowed() if self.shared is None else self._shared_allowed
                spent = (f"the retry/fix-up budget ({int(allowed)} extra requests, "
                         f"{cfg.extra_budget:.0%} of the first round) is spent")
                if attempt:
                    raise _Failed("http", f"{last}; not retried: {spent}")
                raise _NoBudget(f"not re-asked: {spent}")
            if self._rf_off and "response_format" in body:
                body = {k: v for k, v in body.items() if k != "response_format"}
                key = request_key(body)
            server = await self._pick()
            self.stats.requests += 1
            self.stats.extra_requests += counts_extra
            server.sent += 1
            server.inflight += 1
            inflight_done = False
            after_429 = False
            kind = ""
            try:
                data = orjson.loads(await self._send(server, body))
                if not isinstance(data, dict) or not data.get("choices"):
                    raise ValueError("no choices in the reply")
                reply = batchfile.reply_from_body(data, origin="live")
                # durable before anything else looks at it: a kill -9 from here on repays nothing
                self._cache.put(key, body["model"], reply)
                server.ok += 1
                server.streak = server.outs = 0
                return reply
            except openai.RateLimitError as exc:
                self.stats.rate_limited += 1
                ra = _retry_after(exc.response.headers)
                delay = ra if ra is not None else self._backoff(attempt)
                self._pause_until = max(self._pause_until, time.monotonic() + delay)
                waited_429 += delay
                if waited_429 > cfg.rate_limit_wait:
                    raise _Failed("http", f"rate limited (429) for {waited_429:.0f}s; giving up for now, "
                                          "re-run to continue") from None
                self.stats.retries += 1
                after_429 = True
                server.inflight -= 1
                inflight_done = True
                await asyncio.sleep(delay)
                continue
            except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
                raise _Fatal(cfg.redact(f"the endpoint {server.url} refused the credentials (HTTP {exc.status_code}): "
                                        f"{_server_message(exc)}; check OPENAI_API_KEY / --api-key")) from None
            except openai.APIStatusError as exc:
                status, detail = exc.status_code, _server_message(exc)
                msg = cfg.redact(f"HTTP {status}: {detail}")
                if status < 500 and status not in (408, 409):
                    if "response_format" in body and status in (400, 422) and _RF_REJECTED.search(detail):
                        self._rf_off = self.stats.response_format_dropped = True  # fall back, remember it
                        self._cache.set_meta(self._rf_meta_key(), "1")
                        continue
                    if status == 404 or re.search(r"model.{0,40}(not found|does not exist|unknown)", detail, re.I):
                        raise _Fatal(cfg.redact(f"the endpoint {server.url} has no model {body['model']!r} or no chat "
                                                f"completions (HTTP {status}: {detail}): wrong --base-url or --model?")) from None
                    kind = "context_length" if _CONTEXT.search(detail) else f"http_{status}"
                    self._outcome(kind, msg, detail)
                    raise _Failed("http", msg) from None
                self.stats.server_errors += 1
                self._server_failed(server)
                kind, last = f"http_{status}", msg
            except (openai.APITimeoutError, TimeoutError):
                self.stats.timeouts += 1
                self._server_failed(server)
                kind, last = "timeout", f"no reply within {self._deadline():.0f}s from {server.url}"
            except openai.APIConnectionError as exc:
                self._server_failed(server)
                kind, last = "connection", cfg.redact(f"connection error with {server.url}: {exc.__cause__ or exc}")
                if self.stats.replies_live == 0 and attempt >= 2 and all(s.ok == 0 for s in self._servers):
                    raise _Fatal(cfg.redact(f"cannot reach the LLM endpoint {cfg.base_url or 'api.openai.com'} "
                                            f"({exc.__cause__ or exc}); is the server running? Or leave "
                                            "--base-url unset to write Batch API files instead")) from None
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                self.stats.server_errors += 1
                kind, last = "malformed", f"malformed response body: {exc}"[:300]
            finally:
                if not inflight_done:
                    server.inflight -= 1
            self._outcome(kind, last)
            if attempt >= cfg.max_retries:
                raise _Failed("http", f"{last} (gave up after {attempt + 1} attempts; re-run to retry)")
            self.stats.retries += 1
            await asyncio.sleep(self._backoff(attempt))
            attempt += 1


def _declare_asyncio() -> Callable[[], None] | None:
    """Tell sniffio that this context runs asyncio (its documented ContextVar, the one anyio itself
    sets); returns the undo. httpx/anyio ask which async library runs ~20 times per request, and
    without the declaration sniffio finds out by an import and asyncio.current_task() each time
    (8% of the event loop's CPU in a translate run)."""
    try:
        import sniffio
    except ImportError:  # anyio without sniffio asks asyncio directly
        return None
    token = sniffio.current_async_library_cvar.set("asyncio")
    return lambda: sniffio.current_async_library_cvar.reset(token)


_DONE_BATCH = 64  # requests finished from the cache handed to the event loop at once
_LATE = 0.1  # a wake-up this much later than asked means the loop or the process was held
_GRACE = 1.0  # seconds a request keeps, after such a stall, for a reply already sent to be read


def _server_message(exc) -> str:
    """The server's own words from an openai APIStatusError (``{"error": {"message": ...}}`` or text)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or err)[:300]
        return str(err)[:300]
    return str(getattr(exc, "message", exc))[:300]


class _PoolsTransport:
    """An httpx transport that spreads requests over ``n`` connection pools, round-robin."""

    def __init__(self, n: int, tls: bool = True):
        import httpx

        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        # one TLS context for every pool (loading the CA bundle costs ~0.1 s each); none for http://
        verify = httpx.create_ssl_context() if tls else False
        self._pools = [httpx.AsyncHTTPTransport(limits=limits, verify=verify) for _ in range(n)]
        self._next = 0

    async def handle_async_request(self, request):
        self._next += 1
        return await self._pools[self._next % len(self._pools)].handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


def run(requests: Sequence[Request], config: EngineConfig | None = None, **kw) -> list[Result]:
    """One-shot helper: ``run(requests, config)`` -> results."""
    return Engine(config, **kw).run(requests)


def iter_ok(results: Iterable[Result]):
    return (r for r in results if r.ok)
