"""The seed-task library: load, validate, add, align translations, stats.

A seed file is self-instruct JSONL, one task a line::

    {"id": "seed_task_0", "name": "breakfast_suggestion", "instruction": "...",
     "instances": [{"input": "", "output": "..."}], "is_classification": false}

``seeds/seeds.toml`` says, per file, its language (``lang``), which file it translates
(``translation_of``) and which findings are *known* defects of data shipped byte for byte from its
origin (``known = ["code:task_id", ...]``): those are reported as warnings, so the shipped files
pass ``curate seeds validate`` while the same defect in a new task fails it. Language findings
come from a statistical model (``curate.langid``) whose verdicts on borderline rows may change, so
instead of listing them by id, ``shipped_language_lines = N`` downgrades ``wrong_language`` on the
first N (shipped) lines; tasks added after them are held to the rule.

Severity of each finding code (``--strict`` turns every warning into an error):

* errors: ``json`` (a line that is not a JSON object), ``schema`` (missing/extra key, wrong type,
  no instances), ``empty_text`` (blank instruction or output), ``duplicate_id``,
  ``duplicate_name``, ``duplicate_row``, ``near_duplicate`` (ROUGE-L F > 0.7 with another
  instruction of the file), ``noinput_marker`` (``<noinput>``, ``No input``, ``N/A``... where the
  format wants ``""``), ``wrong_language`` (a task confidently in another language than the
  file's, e.g. Indonesian in a Malay file), ``file_language`` (the file's majority language is not
  the declared one).
* warnings: ``id_format`` (not ``seed_task_N``), ``id_gap`` (numbering skips ids),
  ``escaped_text`` (literal ``\\n`` / ``\\"`` that was escaped twice), ``name_format`` (not
  snake_case), ``untranslated_name`` (same name as the task it translates), ``language_unsure``,
  ``language_skipped`` (no language identifier available), and every *known* finding.
"""

from __future__ import annotations

import importlib
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import orjson
from scipy.optimize import linear_sum_assignment

from curate import io
from curate.errors import UserError
from curate.io.files import require_file
from curate.rouge import RougeIndex, tokenize
from curate.text import looks_like_code

SEEDS_DIR = Path(__file__).resolve().parents[1] / "seeds"
MANIFEST = "seeds.toml"
KEYS = ("id", "name", "instruction", "instances", "is_classification")
ID_RE = re.compile(r"^seed_task_(\d+)$")
NAME_RE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
NOINPUT_RE = re.compile(
    r"^\s*(?:<\s*no\s*-?\s*input\s*>|no\s*-?\s*input|n/a|(?:tiada|tidak\s+ada)\s+input(?:\s+diperlukan)?)"
    r"\s*\.?\s*$|<\s*no\s*-?\s*input\s*>", re.I)
NEAR_DUP = 0.7
ERRORS = {"json", "schema", "empty_text", "duplicate_id", "duplicate_name", "duplicate_row",
          "near_duplicate", "noinput_marker", "wrong_language", "file_language"}
LANG_CONFIDENT = 0.8


@dataclass
class Task:
    id: str
    name: str
    instruction: str
    instances: list[dict[str, str]]
    is_classification: bool
    line: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "instruction": self.instruction,
                "instances": self.instances, "is_classification": self.is_classification}

    @property
    def text(self) -> str:
        """Instruction plus instances: what decides the task's language."""
        parts = [self.instruction]
        for inst in self.instances:
            parts += [inst.get("input", ""), inst.get("output", "")]
        return "\n".join(p for p in parts if p)


@dataclass
class Finding:
    file: str
    line: int
    code: str
    message: str
    task_id: str | None = None
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message} [{self.code}]"


@dataclass
class SeedFile:
    path: Path
    tasks: list[Task] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


# -- settings ----------------------------------------------------------------------------------
def manifest(seeds_dir: Path = SEEDS_DIR) -> dict[str, dict[str, Any]]:
    """``seeds.toml`` as {file name: settings}; {} when there is none."""
    path = Path(seeds_dir) / MANIFEST
    if not path.exists():
        return {}
    from curate.io.files import load_toml

    files = load_toml(path, what="seeds manifest").get("files", {})
    if not isinstance(files, dict):
        raise UserError(f"{path}: [files] must be a table of file name -> settings")
    return files


def settings_for(path: Path) -> dict[str, Any]:
    return manifest(Path(path).resolve().parent).get(Path(path).name, {})


def default_files(seeds_dir: Path | None = None) -> list[Path]:
    """Every ``*.jsonl`` under ``./seeds`` (or the repository's seeds/ when there is none here)."""
    if seeds_dir is None:
        seeds_dir = Path("seeds") if (Path("seeds") / MANIFEST).exists() else SEEDS_DIR
    files = sorted(Path(seeds_dir).glob("*.jsonl"))
    if not files:
        raise UserError(f"{seeds_dir}: no seed files (*.jsonl) here.")
    return files


# -- loading -------------------------------------------------------------------------------------
def _check_schema(obj: Any, f: SeedFile, line: int) -> Task | None:
    name = str(f.path)
    if not isinstance(obj, dict):
        f.findings.append(Finding(name, line, "json", f"expected a JSON object, got {type(obj).__name__}"))
        return None
    tid = obj.get("id") if isinstance(obj.get("id"), str) else None
    problems = []
    missing = [k for k in KEYS if k not in obj]
    extra = [k for k in obj if k not in KEYS]
    if missing:
        problems.append(f"missing key(s) {', '.join(missing)}")
    if extra:
        problems.append(f"unknown key(s) {', '.join(extra)}")
    for key in ("id", "name", "instruction"):
        if key in obj and not isinstance(obj[key], str):
            problems.append(f"{key} must be a string")
    if "is_classification" in obj and not isinstance(obj["is_classification"], bool):
        problems.append("is_classification must be true or false")
    instances = obj.get("instances")
    if "instances" in obj:
        if not isinstance(instances, list) or not instances:
            problems.append("instances must be a non-empty list")
        else:
            for i, inst in enumerate(instances):
                if not isinstance(inst, dict) or set(inst) != {"input", "output"} or not all(
                        isinstance(v, str) for v in inst.values()):
                    problems.append(f"instances[{i}] must be {{\"input\": str, \"output\": str}}")
    if problems:
        f.findings.append(Finding(name, line, "schema", "; ".join(problems), tid))
        return None
    return Task(obj["id"], obj["name"], obj["instruction"], obj["instances"], obj["is_classification"], line)


def load(path: str | Path) -> SeedFile:
    """Parse a seed file tolerantly: good tasks plus ``json``/``schema`` findings for the rest."""
    path = Path(path)
    require_file(path, what="seed file")
    _check_bytes(path)
    f = SeedFile(path)
    with open(path, "rb") as fh:
        for line, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                f.findings.append(Finding(str(path), line, "json", f"not valid JSON ({exc})"))
                continue
            task = _check_schema(obj, f, line)
            if task is not None:
                f.tasks.append(task)
    return f


def _check_bytes(path: Path) -> None:
    """Refuse an empty, binary or non-UTF-8 seed file with one line (a seed file is UTF-8 JSONL)."""
    from curate.ingest.encoding import check_text_head

    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head.strip():
        raise UserError(f"{path}: the file is empty; a seed file holds one JSON task per line.")
    enc = check_text_head(path, head)
    if enc not in ("utf-8",):
        raise UserError(f"{path}: a seed file must be UTF-8, this one is {enc.upper()}; convert it "
                        f"(iconv -f {enc.upper()} -t UTF-8).")


def load_tasks(path: str | Path) -> list[Task]:
    """The tasks of a seed file, refusing files with broken lines."""
    f = load(path)
    bad = [x for x in f.findings if x.code in ("json", "schema")]
    if bad:
        raise UserError(f"{path} has lines that are not seed tasks:\n" + "\n".join(map(str, bad[:10])))
    return f.tasks


# -- language --------------------------------------------------------------------------------
_LANGID_PROBLEM: list[str] = []


def detect_languages(texts: list[str]) -> list[tuple[str, float]] | None:
    """``curate.langid.detect_many`` over ``texts``; None (reason in ``_LANGID_PROBLEM``) when the
    language identifier is not installed or cannot load its model."""
    try:
        mod = importlib.import_module("curate.langid")
        if hasattr(mod, "detect_many"):
            return [(str(l), float(c)) for l, c in mod.detect_many(texts)]
        return [(str(l), float(c)) for l, c in (mod.detect(t) for t in texts)]
    except (ImportError, OSError, ValueError, AttributeError) as exc:
        _LANGID_PROBLEM[:] = [f"{type(exc).__name__}: {exc}"]
        return None


# -- validation --------------------------------------------------------------------------------
def _num(task_id: str) -> int | None:
    m = ID_RE.match(task_id)
    return int(m.group(1)) if m else None


def check_tasks(f: SeedFile, lang: str | None = None, near_dup: float = NEAR_DUP,
                translation_of: list[Task] | None = None) -> list[Finding]:
    """Content checks over parsed tasks (ids, names, text, markers, near-duplicates, language)."""
    name, out = str(f.path), []
    tasks = f.tasks
    by_id: dict[str, Task] = {}
    by_name: dict[str, Task] = {}
    by_row: dict[bytes, Task] = {}
    for t in tasks:
        row = orjson.dumps({k: v for k, v in t.to_json().items() if k != "id"})
        if t.id in by_id:
            first = by_id[t.id]
            if orjson.dumps(first.to_json()) == orjson.dumps(t.to_json()):
                out.append(Finding(name, t.line, "duplicate_row", f"{t.id} repeats line {first.line} exactly", t.id))
            else:
                out.append(Finding(name, t.line, "duplicate_id", f"id {t.id} is already used on line {first.line}", t.id))
        else:
            by_id[t.id] = t
        if t.name in by_name and by_name[t.name].id != t.id:
            out.append(Finding(name, t.line, "duplicate_name",
                               f"name {t.name!r} is already used by {by_name[t.name].id} (line {by_name[t.name].line})", t.id))
        by_name.setdefault(t.name, t)
        if row in by_row and by_row[row].id != t.id:
            out.append(Finding(name, t.line, "duplicate_row", f"same task as {by_row[row].id} (line {by_row[row].line})", t.id))
        by_row.setdefault(row, t)
        if _num(t.id) is None:
            out.append(Finding(name, t.line, "id_format", f"id {t.id!r} is not seed_task_<number>", t.id, "warning"))
        if not NAME_RE.match(t.name):
            out.append(Finding(name, t.line, "name_format", f"name {t.name!r} is not snake_case", t.id, "warning"))
        if not t.instruction.strip():
            out.append(Finding(name, t.line, "empty_text", "instruction is empty", t.id))
        elif NOINPUT_RE.search(t.instruction):
            out.append(Finding(name, t.line, "noinput_marker", "instruction contains a <noinput> marker", t.id))
        for i, inst in enumerate(t.instances):
            if not inst["output"].strip():
                out.append(Finding(name, t.line, "empty_text", f"instances[{i}].output is empty", t.id))
            for key in ("input", "output"):
                value = inst[key]
                if value and NOINPUT_RE.search(value):
                    out.append(Finding(name, t.line, "noinput_marker",
                                       f"instances[{i}].{key} is {value.strip()[:30]!r}: "
                                       + ("an empty input is \"\"" if key == "input" else "a placeholder, not an answer"),
                                       t.id))
                if '\\"' in value or ("\\n" in value and not looks_like_code(value)):
                    out.append(Finding(name, t.line, "escaped_text",
                                       f"instances[{i}].{key} has literal \\n or \\\" (escaped twice?)", t.id, "warning"))
    # numbering gaps
    nums = sorted({n for n in (_num(t.id) for t in tasks) if n is not None})
    for a, b in zip(nums, nums[1:]):
        if b > a + 1:
            t = next(x for x in tasks if _num(x.id) == b)
            missing = f"seed_task_{a + 1}" + (f"..{b - 1}" if b - 1 > a + 1 else "")
            out.append(Finding(name, t.line, "id_gap", f"ids skip {missing}", t.id, "warning"))
    # near-duplicate instructions (each against the ones before it)
    idx = RougeIndex()
    for t in tasks:
        j, score = idx.most_similar_above(t.instruction, near_dup)
        if j >= 0:
            other = tasks[j]
            same_row = orjson.dumps(other.to_json()) == orjson.dumps(t.to_json())
            if not same_row:
                out.append(Finding(name, t.line, "near_duplicate",
                                   f"instruction is ROUGE-L {score:.2f} similar to {other.id} (line {other.line})", t.id))
        idx.add(t.instruction)
    # untranslated names
    if translation_of is not None:
        pairs = align(translation_of, tasks).pairs
        for en_i, ms_i, _ in pairs:
            if tasks[ms_i].name == translation_of[en_i].name:
                out.append(Finding(name, tasks[ms_i].line, "untranslated_name",
                                   f"name {tasks[ms_i].name!r} is the same as the original's", tasks[ms_i].id, "warning"))
    out += check_language(f, lang)
    return out


def _lang_text(t: Task) -> str:
    """Instruction and outputs (inputs are often source text in another language on purpose)."""
    return "\n".join([t.instruction] + [i["output"] for i in t.instances])


def check_language(f: SeedFile, lang: str | None) -> list[Finding]:
    """Each task in the file's language (declared, else the majority).

    The instruction and outputs are read together. A task that reads as another language passes
    when its instruction alone reads as the file's language or is too short to tell, so a
    translation task with a Chinese output, or code, is fine; but Indonesian in a Malay file is
    reported whatever the instruction says, as that is the confusion this check exists for.
    """
    name, tasks = str(f.path), f.tasks
    if not tasks:
        return []
    found = detect_languages([_lang_text(t) for t in tasks])
    if found is None:
        why = _LANGID_PROBLEM[0] if _LANGID_PROBLEM else "not available"
        return [Finding(name, 1, "language_skipped", f"language not checked: curate.langid {why}",
                        severity="warning")]
    votes = Counter(l for l, c in found if l not in ("und",))
    majority = votes.most_common(1)[0][0] if votes else "und"
    out = []
    expected = lang or majority
    if lang and majority != lang:
        out.append(Finding(name, 1, "file_language",
                           f"the file is declared {lang!r} but most tasks read as {majority!r} ({dict(votes)})"))
    odd = [k for k, (l, _) in enumerate(found) if l not in (expected, "und")
           and not (expected == "ms" and l == "id")]
    alone = dict(zip(odd, detect_languages([tasks[k].instruction for k in odd]) or [])) if odd else {}
    for k, (t, (l, conf)) in enumerate(zip(tasks, found)):
        if l == expected or l == "und":
            continue
        if k in alone:
            il, iconf = alone[k]
            if il == expected or il == "und" or iconf < LANG_CONFIDENT:
                continue
            l, conf = il, iconf
        if conf >= LANG_CONFIDENT:
            out.append(Finding(name, t.line, "wrong_language",
                               f"task reads as {l!r} ({conf:.2f}), the file is {expected!r}", t.id))
        else:
            out.append(Finding(name, t.line, "language_unsure",
                               f"task may be {l!r} ({conf:.2f}), the file is {expected!r}", t.id, "warning"))
    return out


def validate(path: str | Path, lang: str | None = None, strict: bool = False,
             near_dup: float = NEAR_DUP, use_known: bool = True,
             cfg: dict[str, Any] | None = None) -> list[Finding]:
    """Every finding for one seed file, with severities settled (see the module docstring).

    ``cfg`` overrides the file's ``seeds.toml`` settings (``lang``, ``translation_of``, ``known``).
    """
    path = Path(path)
    f = load(path)
    cfg = settings_for(path) if cfg is None else cfg
    lang = lang or cfg.get("lang")
    original = None
    if cfg.get("translation_of"):
        orig_path = Path(cfg["translation_of"])
        orig_path = orig_path if orig_path.is_absolute() else path.parent / orig_path
        if orig_path.exists():
            original = load(orig_path).tasks
    findings = f.findings + check_tasks(f, lang, near_dup, original)
    use_known = use_known and not strict
    known = set(cfg.get("known", [])) if use_known else set()
    shipped = int(cfg.get("shipped_language_lines", 0)) if use_known else 0
    for x in findings:
        if x.code not in ERRORS:
            x.severity = "warning"
        if x.severity == "error" and (f"{x.code}:{x.task_id}" in known or f"{x.code}:*" in known):
            x.severity = "warning"
            x.message += " (known defect of the shipped file)"
        elif x.severity == "error" and x.code == "wrong_language" and x.line <= shipped:
            x.severity = "warning"
            x.message += " (shipped line, see seeds.toml)"
        if strict:
            x.severity = "error"
    findings.sort(key=lambda x: (x.line, x.code))
    return findings


# -- add ---------------------------------------------------------------------------------------
def next_id(tasks: Iterable[Task]) -> str:
    nums = [n for n in (_num(t.id) for t in tasks) if n is not None]
    return f"seed_task_{max(nums) + 1 if nums else 0}"


def slug(text: str, words: int = 4) -> str:
    toks = [t for t in tokenize(text) if t.isascii()][:words]
    return "_".join(toks) or "task"


def add_task(path: str | Path, instruction: str, output: str, input: str = "", name: str | None = None,
             is_classification: bool = False, lang: str | None = None, strict: bool = False,
             instances: list[dict[str, str]] | None = None) -> tuple[Task, list[Finding]]:
    """Append a task with the next id, if the file still validates with it; atomic write.

    Only findings about the new task (or new file-level errors) block the write, so known defects
    elsewhere in a shipped file do not. Raises ``UserError`` listing the blocking findings.
    """
    path = Path(path)
    before = load(path) if path.exists() else SeedFile(path)
    if any(x.code in ("json", "schema") for x in before.findings):
        raise UserError(f"{path} has broken lines; fix them first (curate seeds validate {path}).")
    tasks = before.tasks
    if name and name in {t.name for t in tasks}:
        other = next(t for t in tasks if t.name == name)
        raise UserError(f"not added: the name {name!r} is already used by {other.id} (line {other.line}); choose another")
    name = name or slug(instruction)
    if name in {t.name for t in tasks}:
        base, k = name, 2
        while f"{base}_{k}" in {t.name for t in tasks}:
            k += 1
        name = f"{base}_{k}"
    task = Task(next_id(tasks), name, instruction.strip(), instances or [{"input": input.strip(), "output": output.strip()}],
                bool(is_classification), line=(max([t.line for t in tasks], default=0) + 1))
    data = path.read_bytes() if path.exists() else b""
    if data and not data.endswith(b"\n"):
        data += b"\n"
    # self-instruct's own encoding: json.dumps defaults (", " / ": " separators, ASCII escapes)
    import json
    new_line = json.dumps(task.to_json()).encode() + b"\n"
    with io.atomic_path(path) as tmp:
        tmp.write_bytes(data + new_line)
        cfg = dict(settings_for(path))
        if cfg.get("translation_of") and not Path(cfg["translation_of"]).is_absolute():
            cfg["translation_of"] = str(path.resolve().parent / cfg["translation_of"])
        findings = validate(tmp, lang=lang or cfg.get("lang"), strict=strict, cfg=cfg)
        for x in findings:
            x.file = str(path)
        blocking = [x for x in findings if x.severity == "error" and (x.task_id == task.id or x.line == task.line
                                                                       or x.code == "file_language")]
        if blocking:
            raise UserError("not added; the new task fails validation:\n" + "\n".join(map(str, blocking)))
    return task, [x for x in findings if x.task_id == task.id or x.line == task.line]


# -- align -------------------------------------------------------------------------------------
_KEEP_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)*|[A-Z][\w'-]*|[<>{}()\[\]=;#$%&*+^|~`@\\]+|https?://\S+|\w*_\w*")


def _surviving(text: str) -> Counter:
    """Tokens that survive translation: numbers, capitalised names, code and symbols, URLs."""
    return Counter(_KEEP_TOKEN.findall(text))


def _dice(a: Counter, b: Counter) -> float:
    total = sum(a.values()) + sum(b.values())
    return 2 * sum((a & b).values()) / total if total else 0.0


def _full_text(t: Task) -> str:
    return t.instruction + "\n" + "\n".join(i["input"] + "\n" + i["output"] for i in t.instances)


def _tfidf_cosine(en: list[Task], ms: list[Task]) -> np.ndarray:
    """Cosine of tf-idf word vectors: words shared across languages are names, numbers, code,
    loanwords and untranslated spans, and the rarer they are the more they tell."""
    docs = [Counter(tokenize(_full_text(t))) for t in en + ms]
    df = Counter(w for d in docs for w in d)
    vocab = {w: k for k, w in enumerate(df)}
    n = len(docs)
    mat = np.zeros((n, len(vocab)))
    for k, d in enumerate(docs):
        for w, c in d.items():
            mat[k, vocab[w]] = (1 + math.log(c)) * math.log(n / df[w])
    mat /= np.linalg.norm(mat, axis=1, keepdims=True) + 1e-12
    return mat[: len(en)] @ mat[len(en):].T


def _shape(t: Task) -> list[float]:
    """Counts that survive translation: lines, digits, list dashes, colons, question marks, quotes,
    commas, brackets and size of the input and the output; instruction punctuation and length."""
    v: list[float] = []
    inst = t.instances[0]
    for txt in (inst["input"], inst["output"]):
        v += [txt.count("\n"), len(re.findall(r"\d", txt)), txt.count("-"), txt.count(":"), txt.count("?"),
              txt.count('"'), txt.count(","), txt.count("("), len(txt.split()), len(txt) / 5]
    v += [t.instruction.count("?"), t.instruction.count(","), len(t.instruction.split())]
    return v


def pair_scores(en: list[Task], ms: list[Task]) -> np.ndarray:
    """Similarity in [0, 1] of every (original, translation) pair, from content only (not ids).

    A weighted mean of: the shape of the task (counts of lines, digits, punctuation and words of
    input and output, which translation keeps), tf-idf cosine of the words (names, numbers, code
    and loanwords survive), overlap of surviving tokens with exact equality of non-empty inputs,
    empty-input agreement, the classification flag and, weakly, position in the file. With ids and
    order scrambled it still pairs 137 of the 139 shipped tasks right (tests/test_seeds.py).
    """
    n, m = len(en), len(ms)
    a = np.array([_shape(t) for t in en])
    b = np.array([_shape(t) for t in ms])
    shape = 1 - (np.abs(a[:, None, :] - b[None, :, :]) / (np.maximum(a[:, None, :], b[None, :, :]) + 1)).mean(axis=2)
    cos = _tfidf_cosine(en, ms)
    en_tok = [_surviving("\n".join(i["input"] + "\n" + i["output"] for i in t.instances)) for t in en]
    ms_tok = [_surviving("\n".join(i["input"] + "\n" + i["output"] for i in t.instances)) for t in ms]
    en_in = [t.instances[0]["input"].strip() for t in en]
    ms_in = [t.instances[0]["input"].strip() for t in ms]
    tok = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            tok[i, j] = 1.0 if en_in[i] and en_in[i] == ms_in[j] else _dice(en_tok[i], ms_tok[j])
    empty = np.equal.outer(np.array([not x for x in en_in]), np.array([not x for x in ms_in]))
    cls = np.equal.outer(np.array([t.is_classification for t in en]), np.array([t.is_classification for t in ms]))
    pos = 1 - np.minimum(1, np.abs(np.subtract.outer(np.arange(n) / max(1, n - 1), np.arange(m) / max(1, m - 1))) * 10)
    weights = {"shape": 3.0, "cos": 1.0, "tok": 0.5, "empty": 0.2, "cls": 0.1, "pos": 0.2}
    total = (weights["shape"] * shape + weights["cos"] * cos + weights["tok"] * tok + weights["empty"] * empty
             + weights["cls"] * cls + weights["pos"] * pos)
    return total / sum(weights.values())


def hungarian(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost assignment of a rectangular cost matrix, as sorted (row, column) pairs.

    scipy's ``linear_sum_assignment`` (the hand-written O(n^2 m) Hungarian it replaced was 5-30x
    slower; ``bench/libs.py hungarian``).
    """
    rows, cols = linear_sum_assignment(np.asarray(cost, float))
    return sorted(zip(rows.tolist(), cols.tolist()))


@dataclass
class Alignment:
    pairs: list[tuple[int, int, float]]          # (original index, translation index, score)
    unmatched_original: list[int]
    unmatched_translation: list[int]
    drift: list[str]


def align(en: list[Task], ms: list[Task], min_score: float = 0.5) -> Alignment:
    """Pair each translated task with its original by content (assignment over ``pair_scores``)."""
    if not en or not ms:
        return Alignment([], list(range(len(en))), list(range(len(ms))), [])
    s = pair_scores(en, ms)
    pairs = [(i, j, float(s[i, j])) for i, j in hungarian(-s) if s[i, j] >= min_score]
    got_en = {i for i, _, _ in pairs}
    got_ms = {j for _, j, _ in pairs}
    un_en = [i for i in range(len(en)) if i not in got_en]
    un_ms = [j for j in range(len(ms)) if j not in got_ms]
    drift: list[str] = []
    ids = Counter(t.id for t in ms)
    for tid, c in sorted(ids.items(), key=lambda kv: _num(kv[0]) or 0):
        if c > 1:
            lines = [t.line for t in ms if t.id == tid]
            drift.append(f"duplicated id {tid} on lines {', '.join(map(str, lines))}")
    ms_ids = set(ids)
    for t in en:
        if t.id not in ms_ids:
            drift.append(f"missing id {t.id} (original line {t.line})")
    # runs of consecutive pairs whose translation line is offset from the original's
    run: list[tuple[int, int, float]] = []

    def flush():
        if run:
            off = run[0][1] - run[0][0]
            a, b = en[run[0][0]], en[run[-1][0]]
            drift.append(f"shifted block: originals {a.id}..{b.id} (lines {a.line}-{b.line}) are at translation "
                         f"lines {ms[run[0][1]].line}-{ms[run[-1][1]].line} (offset {off:+d} lines, "
                         f"{sum(1 for i, j, _ in run if ms[j].id != en[i].id)} with a different id)")

    for pr in pairs:
        if run and pr[1] - pr[0] == run[-1][1] - run[-1][0] and pr[0] == run[-1][0] + 1:
            run.append(pr)
            continue
        if run and run[0][1] - run[0][0] != 0:
            flush()
        run = [pr]
    if run and run[0][1] - run[0][0] != 0:
        flush()
    for i, j, _ in pairs:
        if en[i].id != ms[j].id:
            drift.append(f"id mismatch: original {en[i].id} (line {en[i].line}) is translated as {ms[j].id} "
                         f"(line {ms[j].line})")
    for i in un_en:
        drift.append(f"untranslated: original {en[i].id} (line {en[i].line}) has no matching translation")
    paired_with = {j: i for i, j, _ in pairs}
    for j in un_ms:
        best = int(np.argmax(s[:, j]))
        note = f"; closest original {en[best].id} (score {s[best, j]:.2f})"
        twin = [k for k in paired_with if ms[k].id == ms[j].id and k != j]
        if twin:
            note = f"; another translation of {en[paired_with[twin[0]]].id} (line {ms[twin[0]].line}) was paired instead"
        drift.append(f"unmatched translation: {ms[j].id} (line {ms[j].line}) matches no original{note}")
    return Alignment(pairs, un_en, un_ms, drift)


# -- stats ---------------------------------------------------------------------------------------
def stats(path: str | Path) -> dict[str, Any]:
    f = load(path)
    tasks = f.tasks
    ins = [len(tokenize(t.instruction)) for t in tasks]
    verbs = Counter(tokenize(t.instruction)[0] for t in tasks if tokenize(t.instruction))
    found = detect_languages([_lang_text(t) for t in tasks]) if tasks else []
    return {
        "file": str(path),
        "tasks": len(tasks),
        "broken_lines": sum(1 for x in f.findings if x.code in ("json", "schema")),
        "classification": sum(t.is_classification for t in tasks),
        "with_input": sum(1 for t in tasks if any(i["input"].strip() for i in t.instances)),
        "instances": sum(len(t.instances) for t in tasks),
        "instruction_words": {"min": min(ins, default=0), "mean": round(float(np.mean(ins)), 1) if ins else 0,
                              "max": max(ins, default=0)},
        "unique_ids": len({t.id for t in tasks}),
        "next_id": next_id(tasks),
        "languages": dict(Counter(l for l, _ in found)) if found is not None else None,
        "top_first_words": dict(verbs.most_common(10)),
    }
