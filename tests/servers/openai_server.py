"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests and benchmarks.

It speaks HTTP/1.1 (keep-alive) on an asyncio loop in a background thread and implements
``POST /v1/chat/completions`` and ``GET /v1/models`` the way OpenAI does (same JSON shapes, error
bodies ``{"error": {...}}``, ``Retry-After`` on 429), so the real ``openai`` client talks to it.

Replies come from ``server.handler(request_json)``, which may return:

* a ``str``: the assistant message content (wrapped in a ``chat.completion`` with usage),
* a ``dict``: a full response body (sent as JSON with status 200), e.g.
  ``completion(text, finish="length")`` for a reply cut by the token limit,
* a :class:`Reply` (status, headers, body, delay) or a tuple ``(status, headers, body)``.

The default handler is :func:`default_model`, a deterministic rule-based "model" that answers
curate's translate/localize JSON contracts (a tiny English/Korean -> Malay word list, sentinel
tokens ``⟦...⟧`` echoed in order) and echoes anything else. Tests plug their own handlers
(``server.handler = ...``), queue one-off faults (``server.script(Reply(429, {"Retry-After": "1"}),
Reply(500), HANG, ...)``: the next requests get them in order, before the handler), add latency
(``server.latency = 0.2``), and read what arrived (``server.count``, ``server.requests``,
``server.auth``).

Use the ``openai_server`` fixture (``from tests.servers.openai_server import openai_server``): a
fresh server per test, stopped afterwards. ``python tests/servers/openai_server.py`` serves it on
a free port until Ctrl-C (handy for ``curate translate --base-url ...`` by hand).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from typing import Any, Callable

import pytest

SENTINEL = re.compile(r"⟦[^⟧]{1,12}⟧")


@dataclasses.dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: Any = None  # str content (status 200), dict (JSON body), bytes (raw)
    delay: float = 0.0


HANG = Reply(200, body="(too late)", delay=3600.0)  # never answers in time: the client times out


def completion(content: str, model: str = "loopback", prompt_tokens: int = 0, finish: str = "stop") -> dict:
    return {
        "id": f"chatcmpl-{int(time.time() * 1e6)}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish,
                     "logprobs": None}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": max(1, len(content) // 4),
                  "total_tokens": prompt_tokens + max(1, len(content) // 4)},
    }


def error_body(status: int, message: str) -> dict:
    kind = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


# ---- the deterministic "model" -----------------------------------------------------------------
EN_MS = {
    "the": "", "a": "", "an": "", "is": "ialah", "are": "adalah", "i": "saya", "you": "anda", "we": "kami",
    "he": "dia", "she": "dia", "it": "ia", "they": "mereka", "my": "saya", "your": "anda", "and": "dan",
    "or": "atau", "not": "tidak", "no": "tidak", "yes": "ya", "to": "ke", "of": "daripada", "in": "dalam",
    "on": "pada", "for": "untuk", "with": "dengan", "this": "ini", "that": "itu", "what": "apakah",
    "how": "bagaimana", "why": "mengapa", "can": "boleh", "have": "mempunyai", "has": "mempunyai",
    "do": "buat", "write": "tulis", "give": "berikan", "list": "senarai", "explain": "terangkan",
    "good": "baik", "bad": "buruk", "doctor": "doktor", "patient": "pesakit", "pain": "sakit",
    "hello": "helo", "hi": "hai", "thank": "terima kasih", "thanks": "terima kasih", "please": "sila",
    "question": "soalan", "answer": "jawapan", "help": "bantuan", "time": "masa", "day": "hari",
    "code": "kod", "function": "fungsi", "number": "nombor", "numbers": "nombor", "people": "orang",
    "money": "wang", "house": "rumah", "school": "sekolah", "water": "air", "food": "makanan",
    "book": "buku", "very": "sangat", "more": "lebih", "will": "akan", "be": "", "if": "jika",
    "but": "tetapi", "because": "kerana", "from": "dari", "about": "tentang", "also": "juga",
    "should": "patut", "take": "ambil", "medicine": "ubat", "health": "kesihatan", "car": "kereta",
}
KO_MS = {"안녕하세요": "helo", "질문": "soalan", "답변": "jawapan", "사람": "orang", "물": "air", "음식": "makanan",
         "학교": "sekolah", "집": "rumah", "돈": "wang", "시간": "masa", "의사": "doktor", "책": "buku"}
MS_TAIL = "Sila ambil perhatian bahawa ini ialah jawapan yang lengkap dan boleh digunakan."
ID_TAIL = "Silakan perhatikan bahwa ini adalah jawaban yang lengkap dan bisa dipakai sekarang juga."
EN_TAIL = "Please note that this is the complete answer and it can be used right away."
WORD = re.compile(r"⟦[^⟧]{1,12}⟧|[\w']*\d(?:[\w']|[.,]\d)*|[A-Za-z']+|[\uac00-\ud7a3]+|\n")


def fake_translate(text: str, lang: str = "ms", drop_sentinels: bool = False) -> str:
    """Deterministic pseudo-translation: known words mapped, sentinels kept in order, a tail in ``lang``."""
    out: list[str] = []
    for tok in WORD.findall(text):
        if tok.startswith("⟦"):
            if not drop_sentinels:
                out.append(tok)
        elif tok == "\n" or any(c.isdigit() for c in tok):
            out.append(tok)
        else:
            low = tok.lower()
            word = EN_MS.get(low) or KO_MS.get(tok)
            if word:
                out.append(word)
    body = " ".join(out).replace(" \n ", "\n").strip()
    tail = {"ms": MS_TAIL, "id": ID_TAIL, "en": EN_TAIL}[lang]
    return f"{body} {tail}".strip()


def _contract(request: dict) -> tuple[str, dict | None]:
    """(system prompt, the JSON object in the last user message or None)."""
    msgs = request.get("messages") or []
    system = next((m.get("content") or "" for m in msgs if m.get("role") == "system"), "")
    users = [m for m in msgs if m.get("role") == "user"]
    if not users:
        return system, None
    # on a fix-up round the last user turn is the error; the payload is the first user turn
    try:
        data = json.loads(users[0].get("content") or "")
    except (json.JSONDecodeError, TypeError):
        return system, None
    return system, data if isinstance(data, dict) else None


def translator(lang: str = "ms", drop_sentinels: bool = False) -> Callable[[dict], str]:
    """A handler answering translate (and localize) requests; ``lang``/``drop_sentinels`` script faults."""
    def handle(request: dict) -> str:
        system, data = _contract(request)
        if data is None:
            return fake_translate(str(request.get("messages", [{}])[-1].get("content", "")), lang, drop_sentinels)
        if "localiz" in system.lower():
            texts = data.get("texts", data)
            out, changes = {}, []
            for k, v in texts.items():
                new = v.replace("$", "RM ").replace("dollars", "ringgit").replace("Seoul", "Kuala Lumpur")
                if new != v:
                    changes.append({"key": k, "from": v[:40], "to": new[:40], "kind": "currency"})
                out[k] = new
            return json.dumps({"texts": out, "changes": changes}, ensure_ascii=False)
        return json.dumps({k: fake_translate(v, lang, drop_sentinels) for k, v in data.items()}, ensure_ascii=False)
    return handle


def default_model(request: dict) -> str:
    return translator()(request)


def body_hash(body: bytes | dict) -> str:
    """The hash of a request body (canonical JSON), to count bodies answered more than once."""
    data = json.loads(body) if isinstance(body, (bytes, str)) else body
    return hashlib.blake2b(json.dumps(data, sort_keys=True).encode(), digest_size=12).hexdigest()


def chaos(handler: Callable[[dict], Any], p500: float = 0.05, p429: float = 0.05, hang: float = 0.01,
          malformed: float = 0.02, seed: int = 0, retry_after: str = "0.2") -> Callable[[dict], Any]:
    """``handler`` behind a flaky server: 500s, 429s with Retry-After, hangs and malformed replies
    (half of them a cut JSON body, half a reply text that is not the JSON the prompt asked for)."""
    rng = random.Random(seed)

    def handle(request: dict):
        roll = rng.random()
        if roll < p500:
            return Reply(500, body="internal error")
        roll -= p500
        if roll < p429:
            return Reply(429, {"Retry-After": retry_after}, "rate limited")
        roll -= p429
        if roll < hang:
            return HANG
        roll -= hang
        if roll < malformed:
            return Reply(200, body=b'{"id": "x", "choices": [{"index": 0, "mess') if roll < malformed / 2 \
                else "Sorry, I cannot produce JSON right now {"
        return handler(request)
    return handle


# ---- the server -----------------------------------------------------------------------------
class OpenAIServer:
    """``with OpenAIServer() as s: s.url`` -> ``http://127.0.0.1:<port>/v1``."""

    def __init__(self, handler: Callable[[dict], Any] | None = None, latency: float = 0.0, port: int = 0):
        self.handler = handler or default_model
        self.latency = latency
        self.port = port
        self.requests: list[dict] = []
        self.auth: list[str | None] = []
        self._script: list[Reply] = []
        self.inflight = 0
        self.max_inflight = 0  # most chat requests being served at once
        self.answered: Counter = Counter()  # request body hash -> replies fully written to the client
        self.files: dict[str, dict] = {}  # Files API: id -> {"meta": {...}, "content": bytes}
        self.batches: dict[str, dict] = {}  # Batch API: id -> batch object
        self.batch_polls = 1  # GETs of a batch answered "in_progress" before it completes
        self.record = None  # a file object: every chat request body is appended as one JSON line
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None

    # -- test API
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests (before the handler is asked)."""
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.auth.clear()
            self._script.clear()
            self.answered.clear()
            self.max_inflight = 0

    # -- lifecycle
    def start(self) -> "OpenAIServer":
        ready = threading.Event()

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                asyncio.start_server(self._conn, "127.0.0.1", self.port, backlog=512))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:  # open keep-alive connections
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(self._server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, name="openai-loopback", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- HTTP
    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length") or 0)
                body = await reader.readexactly(n) if n else b""
                status, extra, payload, delay = self._route(method, path, headers, body)
                chat = path.split("?", 1)[0].rstrip("/").endswith("/chat/completions")
                self.inflight += 1
                self.max_inflight = max(self.max_inflight, self.inflight)
                try:
                    if delay:
                        await asyncio.sleep(delay)
                finally:
                    self.inflight -= 1
                out = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}",
                       "content-type: application/json", f"content-length: {len(payload)}",
                       f"x-request-id: req_{len(self.requests)}"]
                out += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + payload)
                await writer.drain()
                if chat and status == 200:
                    self.answered[body_hash(body)] += 1
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    def _route(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes, float]:
        path = path.split("?", 1)[0]
        if path.startswith(("/v1/files", "/v1/batches")):
            status, data = self._batch_api(method, path.rstrip("/"), headers, body)
            payload = data if isinstance(data, bytes) else json.dumps(data).encode()
            return status, {}, payload, 0.0
        if method == "GET" and path.rstrip("/") == "/v1/models":
            data = {"object": "list", "data": [{"id": "loopback", "object": "model", "created": 0, "owned_by": "curate"}]}
            return 200, {}, json.dumps(data).encode(), 0.0
        if method != "POST" or path.rstrip("/") != "/v1/chat/completions":
            return 404, {}, json.dumps(error_body(404, f"no route {method} {path}")).encode(), 0.0
        try:
            request = json.loads(body)
        except json.JSONDecodeError:
            return 400, {}, json.dumps(error_body(400, "body is not JSON")).encode(), 0.0
        if self.record is not None:
            self.record.write(json.dumps(request, ensure_ascii=False) + "\n")
            self.record.flush()
        with self._lock:
            self.requests.append(request)
            self.auth.append(headers.get("authorization"))
            scripted = self._script.pop(0) if self._script else None
        reply = scripted if scripted is not None else self.handler(request)
        status, headers_out, payload = self._payload(request, reply)
        delay = reply.delay if isinstance(reply, Reply) else 0.0
        return status, headers_out, payload, self.latency + delay

    def _payload(self, request: dict, reply: Any) -> tuple[int, dict, bytes]:
        """(status, headers, body bytes) of a handler's reply to a chat request."""
        if isinstance(reply, tuple):
            reply = Reply(*reply)
        elif isinstance(reply, (str, dict)):
            reply = Reply(200, {}, reply)
        prompt_tokens = sum(len(str(m.get("content") or "")) for m in request.get("messages", [])) // 4
        if reply.status == 200 and isinstance(reply.body, str):
            payload = json.dumps(completion(reply.body, request.get("model", "loopback"), prompt_tokens)).encode()
        elif isinstance(reply.body, (dict, list)):
            payload = json.dumps(reply.body).encode()
        elif isinstance(reply.body, bytes):
            payload = reply.body
        elif reply.status != 200:
            payload = json.dumps(error_body(reply.status, str(reply.body or f"scripted {reply.status}"))).encode()
        else:
            payload = b"{}"
        return reply.status, reply.headers, payload

    # -- the Files and Batch APIs (enough of them for the openai client's files/batches calls)
    def _batch_api(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, Any]:
        parts = path.split("/")[2:]  # ["files", id?, "content"?] / ["batches", id?, "cancel"?]
        now = int(time.time())
        if parts == ["files"] and method == "POST":
            purpose, filename, content = _multipart(headers.get("content-type", ""), body)
            if content is None:
                return 400, error_body(400, "no file in the upload")
            fid = f"file-{len(self.files) + 1:04d}"
            meta = {"id": fid, "object": "file", "bytes": len(content), "created_at": now,
                    "filename": filename or "upload.jsonl", "purpose": purpose or "batch", "status": "processed"}
            self.files[fid] = {"meta": meta, "content": content}
            return 200, meta
        if parts[0] == "files" and len(parts) >= 2:
            f = self.files.get(parts[1])
            if f is None:
                return 404, error_body(404, f"no such file {parts[1]}")
            return (200, f["content"]) if parts[2:] == ["content"] else (200, f["meta"])
        if parts == ["batches"] and method == "POST":
            req = json.loads(body or b"{}")
            src = self.files.get(req.get("input_file_id", ""))
            if src is None:
                return 400, error_body(400, f"input file {req.get('input_file_id')!r} not found")
            bid = f"batch_{len(self.batches) + 1:04d}"
            self.batches[bid] = {"id": bid, "object": "batch", "endpoint": req.get("endpoint"),
                                 "input_file_id": req["input_file_id"], "completion_window": req.get("completion_window"),
                                 "status": "validating", "output_file_id": None, "error_file_id": None,
                                 "created_at": now, "metadata": req.get("metadata"), "errors": None,
                                 "request_counts": {"total": 0, "completed": 0, "failed": 0}, "_polls": 0}
            return 200, self._public(self.batches[bid])
        if parts[0] == "batches" and len(parts) >= 2:
            b = self.batches.get(parts[1])
            if b is None:
                return 404, error_body(404, f"no such batch {parts[1]}")
            if parts[2:] == ["cancel"]:
                b["status"] = "cancelled"
            elif b["status"] in ("validating", "in_progress"):
                b["_polls"] += 1
                b["status"] = "in_progress"
                if b["_polls"] > self.batch_polls:
                    self._run_batch(b)
            return 200, self._public(b)
        return 404, error_body(404, f"no route {method} {path}")

    @staticmethod
    def _public(batch: dict) -> dict:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _run_batch(self, b: dict) -> None:
        """Answer every line of the input file with the handler, as the Batch API would."""
        out, err = [], []
        for n, line in enumerate(self.files[b["input_file_id"]]["content"].splitlines()):
            if not line.strip():
                continue
            item = json.loads(line)
            request = item["body"]
            with self._lock:
                self.requests.append(request)
                scripted = self._script.pop(0) if self._script else None
            reply = scripted if scripted is not None else self.handler(request)
            status, _, payload = self._payload(request, reply)
            try:
                body = json.loads(payload)
            except json.JSONDecodeError:
                status, body = 500, error_body(500, "malformed reply")
            rec = {"id": f"batch_req_{n}", "custom_id": item["custom_id"],
                   "response": {"status_code": status, "request_id": f"req_{n}", "body": body}, "error": None}
            (out if status == 200 else err).append(json.dumps(rec, ensure_ascii=False))
        for kind, lines in (("output_file_id", out), ("error_file_id", err)):
            if lines:
                fid = f"file-{len(self.files) + 1:04d}"
                content = ("\n".join(lines) + "\n").encode()
                self.files[fid] = {"meta": {"id": fid, "object": "file", "bytes": len(content), "purpose": "batch_output",
                                            "created_at": int(time.time()), "filename": f"{b['id']}_{kind[:-8]}.jsonl",
                                            "status": "processed"}, "content": content}
                b[kind] = fid
        b["status"] = "completed"
        b["completed_at"] = int(time.time())
        b["request_counts"] = {"total": len(out) + len(err), "completed": len(out), "failed": len(err)}


def _multipart(content_type: str, body: bytes) -> tuple[str | None, str | None, bytes | None]:
    """(purpose, filename, file bytes) of a multipart/form-data upload."""
    from email.parser import BytesParser
    from email.policy import HTTP

    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    purpose = filename = content = None
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "purpose":
            purpose = part.get_payload(decode=True).decode()
        elif name == "file":
            filename = part.get_filename()
            content = part.get_payload(decode=True)
    return purpose, filename, content


@pytest.fixture
def openai_server():
    """A fresh loopback OpenAI-compatible server for one test (``.url``, ``.handler``, ``.count``)."""
    server = OpenAIServer().start()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--faults", action="store_true", help="5%% 500s, 5%% 429s, 1%% hangs, 2%% malformed replies")
    ap.add_argument("--record", help="append every chat request body to this JSONL file")
    args = ap.parse_args()
    with OpenAIServer(chaos(default_model) if args.faults else None, latency=args.latency, port=args.port) as s:
        if args.record:
            s.record = open(args.record, "a", encoding="utf-8")
        print(f"serving {s.url} (Ctrl-C to stop)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
