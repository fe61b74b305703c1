"""lingua in a helper process, so a big ingest does not wait for it.

Loading lingua's models costs ~0.5 s of CPU and holds the GIL all along, and the few texts the cheap
language steps leave undecided (~0.3% of real rows) then cost ~0.3 ms each. :class:`LinguaWorker`
starts ``python -m curate.lingua_worker`` at once: the child loads the models on the other core while
the parent reads and parses the first blocks, then answers each batch of texts while the parent
works on the next block (:func:`curate.langid.start_detect_column`); a text an earlier batch held is
read from the values kept then, not computed again. The child computes exactly what
:func:`curate.langid._lingua_guesses` would (the same detectors, the same calls, the confidence
values sent back as JSON floats, which round-trip exactly), so the verdicts are the same; if the
child fails, the parent computes the rest itself.

One detector (:data:`DETECTORS`): the 12 languages in lingua's low-accuracy mode (trigram models
only, ~0.15 s to load). A hard text is decided by it in one of two modes (:data:`MODES`, chosen by
:func:`curate.langid.lingua_mode`): ``trigrams``, all 12 languages' values, and ``family``, only
English's, Malay's and Indonesian's (scaled to sum to 1), for short mixes of those languages, which
the 12 languages' trigrams often take for Tagalog or Turkish. ``family`` once had a detector of its
own, the 3 languages at every n-gram length: its models cost ~0.55 s of CPU to load for the ~150
short mixes of a 1M-row corpus, and its verdicts differ on 14 of them (README, ingest).

Protocol on the pipes, one message each way per batch: 4-byte little-endian length, then JSON. The
first message names the detectors (:data:`DETECTORS`); then a list of ``[mode, text]`` (:data:`MODES`)
-> a list of ``[[language, value], ...]``.
"""

from __future__ import annotations

import atexit
import os
import queue
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any, Callable

import orjson

_LEN = struct.Struct("<I")

#: lingua's languages for the texts the cheap steps leave undecided (:mod:`curate.langid`'s fallback:
#: English, the pair and common Latin-script languages; Korean never gets there, Hangul is decided
#: by script), and how much of such a text lingua reads (its time grows fast with length: 25x at 600).
LANGUAGES = ("ENGLISH MALAY INDONESIAN FRENCH GERMAN SPANISH PORTUGUESE ITALIAN DUTCH TAGALOG VIETNAMESE "
             "TURKISH").split()
FAMILY = ["ENGLISH", "MALAY", "INDONESIAN"]
CHARS = 300

#: The detectors, by name: (languages, low-accuracy mode).
DETECTORS = {"trigrams": (LANGUAGES, True)}
#: How a hard text is decided, by mode (:func:`curate.langid.lingua_mode`): the detector computing
#: its values, and the languages whose values count (None: every language's; else only these, scaled
#: to sum to 1, as a detector of only these languages gives them).
MODES = {"trigrams": ("trigrams", None), "family": ("trigrams", FAMILY)}

#: An input file at least this big has lingua's share of its language id done in a helper process:
#: its ~0.5 s of model loading is only worth hiding on a long job.
BIG_INPUT_BYTES = 64 << 20


def _send(fh, obj: Any) -> None:
    data = orjson.dumps(obj)
    fh.write(_LEN.pack(len(data)) + data)
    fh.flush()


def _recv(fh) -> Any:
    head = fh.read(_LEN.size)
    if len(head) < _LEN.size:
        raise EOFError("lingua worker closed its pipe")
    (n,) = _LEN.unpack(head)
    data = fh.read(n)
    if len(data) < n:
        raise EOFError("lingua worker closed its pipe")
    return orjson.loads(data)


class LinguaWorker:
    """A child process running lingua's ``detectors`` (:data:`DETECTORS`); :meth:`submit`
    ``(mode, text)`` pairs (:data:`MODES`), call the returned function for the guesses (``(label, confidence,
    p_malay)`` per text, as :func:`curate.langid._lingua_guesses`)."""

    def __init__(self, detectors: dict[str, tuple[list[str], bool]], chars: int):
        self.detectors, self.chars = detectors, chars
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, "-m", "curate.lingua_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env)
        self._outbox: queue.Queue = queue.Queue()  # a thread writes, so a full pipe never blocks the caller
        self._writer = threading.Thread(target=self._write_all, daemon=True)
        self._writer.start()
        self._outbox.put(detectors)
        self._replies: queue.SimpleQueue = queue.SimpleQueue()  # a Future per batch sent, in order
        self._reader = threading.Thread(target=self._read_all, daemon=True)
        self._reader.start()
        self.failed = False

    def _write_all(self) -> None:
        while (obj := self._outbox.get()) is not None:
            try:
                _send(self.proc.stdin, obj)  # type: ignore[union-attr]
            except (OSError, ValueError, AttributeError):
                return  # the child is gone: the reader sees it and falls back

    def _read_all(self) -> None:
        """The replies, read as they come (so :meth:`submit`'s ``done`` can tell whether one is in):
        each sets the next batch's Future; a dead or confused child ends the reading, and that
        batch and the later ones are computed in the parent (``None``)."""
        stdout, ok = self.proc.stdout, True  # type: ignore[union-attr]
        while (reply := self._replies.get()) is not None:  # None: the worker is closed
            future, n = reply
            if ok:
                try:
                    pairs = _recv(stdout)
                    ok = len(pairs) == n
                except (OSError, EOFError, ValueError):
                    ok = False
            future.set_result(pairs if ok else None)

    def submit(self, items: list[tuple[str, str]]) -> Callable[[], list[tuple[str, float, float]]]:
        """Send ``items`` (``(mode, text)`` pairs) to the child; the returned function gives
        their guesses (waiting for them), and its ``done()`` tells, without waiting, whether they are in."""
        from curate import langid

        cut = [(mode, t[:self.chars]) for mode, t in items]
        if self.failed or self.proc is None:
            local = lambda: langid._lingua_guesses(items)  # noqa: E731
            local.done = lambda: True  # type: ignore[attr-defined]
            return local
        future: Future = Future()
        self._replies.put((future, len(cut)))
        self._outbox.put(cut)

        def result() -> list[tuple[str, float, float]]:
            reply = future.result()
            if reply is not None:
                return [langid._guess_of_pairs(pairs) for pairs in reply]
            if not self.failed:
                self.failed = True  # a dead or confused child: this and later batches in-process
                self.close()
            return langid._lingua_guesses(items)

        result.done = future.done  # type: ignore[attr-defined]
        return result

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        self._outbox.put(None)
        self._replies.put(None)
        try:
            proc.stdin.close()  # type: ignore[union-attr]
        except OSError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._reader.join()
        proc.stdout.close()  # type: ignore[union-attr]

    def kill(self) -> None:
        """End the child without waiting for its models or its answers (a helper never used)."""
        if self.proc is not None:
            self.proc.kill()
        self.close()

    def __enter__(self) -> "LinguaWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_early: LinguaWorker | None = None


def start_early() -> None:
    """Start the helper process now, for the next :func:`take` to hand out: ``curate ingest`` of a
    big file calls it before it imports its modules (:mod:`curate.commands.early`), so the models
    load on the second core, idle while the command starts (~1 s of imports and compiled code
    loading on one core), instead of beside the reading, which keeps both cores busy."""
    global _early
    if _early is None:
        _early = LinguaWorker(DETECTORS, CHARS)
        atexit.register(_drop_early)


def take(detectors: dict[str, tuple[list[str], bool]], chars: int) -> LinguaWorker:
    """A helper process for ``detectors``: the one :func:`start_early` started (once), else a new one."""
    global _early
    worker, _early = _early, None
    if worker is not None and (worker.detectors, worker.chars) == (detectors, chars):
        return worker
    if worker is not None:
        worker.kill()
    return LinguaWorker(detectors, chars)


def _drop_early() -> None:
    """At exit: an early helper nothing took (the input turned out not to need it) is ended at once."""
    global _early
    worker, _early = _early, None
    if worker is not None:
        worker.kill()


def detector(languages: list[str], low_accuracy: bool = False, preload: bool = True):
    """lingua's detector of ``languages`` (names of ``lingua.Language``), in its low-accuracy mode
    (trigrams only) if ``low_accuracy``. ``preload``: every model loaded now, by lingua's threads in
    parallel, what the in-process fallback (:func:`curate.langid._lingua`) wants; the helper
    process, which has a core of its own while the parent reads, loads them one after another
    instead (:func:`main`). The same models either way, so the same values."""
    from lingua import Language, LanguageDetectorBuilder

    builder = LanguageDetectorBuilder.from_languages(*(getattr(Language, n) for n in languages))
    if low_accuracy:
        builder = builder.with_low_accuracy_mode()
    return (builder.with_preloaded_language_models() if preload else builder).build()


def guesses(detectors: dict[str, Any], items: list[tuple[str, str]],
            seen: dict[tuple[str, str], list[tuple[str, float]]] | None = None) -> list[list[tuple[str, float]]]:
    """lingua's ``(language, confidence)`` pairs, best first, of each ``(mode, text)`` item
    (:data:`MODES`), in order: each detector's texts in one parallel call. ``seen``: each detector's
    values of the texts computed before, by (detector, text), read instead of computed again and
    given the new ones (the helper process keeps them across batches: :func:`main`)."""
    seen = {} if seen is None else seen
    for name, lingua in detectors.items():
        new = list(dict.fromkeys(t for mode, t in items if MODES[mode][0] == name and (name, t) not in seen))
        if new:
            for text, values in zip(new, lingua.compute_language_confidence_values_in_parallel(new)):
                seen[name, text] = [(v.language.name, v.value) for v in values]
    detector_of = {mode: name for mode, (name, _) in MODES.items() if name in detectors}
    return [_kept(seen[detector_of[mode], t], MODES[mode][1]) if mode in detector_of else [] for mode, t in items]


def _kept(pairs: list[tuple[str, float]], languages: list[str] | None) -> list[tuple[str, float]]:
    """The pairs of ``languages`` only (all if None), their values scaled to sum to 1 (lingua's
    values of the languages it was asked about sum to 1; none left above 0: left as they are)."""
    if languages is None:
        return pairs
    pairs = [(name, value) for name, value in pairs if name in languages]
    total = sum(value for _, value in pairs)
    return [(name, value / total) for name, value in pairs] if total else pairs


#: At most this many texts' values are kept by the helper process between batches (:func:`main`).
_SEEN_MAX = 100_000

#: A short text of plain ASCII words: computing it loads the detectors' models, one after another,
#: at once.
_WARM_UP = "Siapakah pemilik asal filem Home Alone?"


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    # Loaded one after another on first use (lingua's parallel preloading costs more CPU: its
    # threads contend on 2 cores), while the parent's first blocks are read.
    detectors = {name: detector(languages, low, preload=False) for name, (languages, low) in _recv(stdin).items()}
    for lingua in detectors.values():
        lingua.compute_language_confidence_values(_WARM_UP)
    # a hard text seen in an earlier batch (each batch is one frame's distinct texts; a corpus
    # repeats headings, templates, quoted passages across frames) is not computed again
    seen: dict[tuple[str, str], list[tuple[str, float]]] = {}
    while True:
        try:
            items = _recv(stdin)
        except EOFError:  # the parent is done: exit without freeing the models one by one (~0.1-0.2 s it waits)
            stdout.flush()
            os._exit(0)
        if len(seen) > _SEEN_MAX:  # a bound on the helper's memory for a long job (~1 KB a text)
            seen.clear()
        _send(stdout, guesses(detectors, items, seen))


if __name__ == "__main__":
    main()
