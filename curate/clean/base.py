"""The rule contract.

A rule has one job. It looks at *cells* (one row per text field of a dataset row, see
:mod:`curate.clean.cells`) or at whole rows, and says which ones it matched, with the matched text
as evidence. A fix rule also returns the new text. The engine decides what happens to a match from
the rule's action (``fix``, ``drop``, ``flag`` or ``off``); rules never drop anything themselves.

Rules work on whole polars columns (regex via ``str.contains``/``str.extract``). Python per row is
used only where it cannot be avoided, and then only on the few cells a vectorized pre-filter chose.
"""

from __future__ import annotations

import re

from dataclasses import dataclass
from typing import Any, ClassVar

import polars as pl

from curate.schemas import KINDS

ACTIONS = ("fix", "drop", "flag", "off")
ROLES = ("prompt", "input", "response", "system")

# Columns a cell rule's ``match`` returns.
MATCH_SCHEMA = {"_cell": pl.UInt32, "evidence": pl.String}
FIX_SCHEMA = {"_cell": pl.UInt32, "evidence": pl.String, "after": pl.String}
ROW_MATCH_SCHEMA = {"_row": pl.UInt32, "evidence": pl.String}


@dataclass
class Context:
    """What a rule may need besides the cells: the run's target language and the frame's kind."""
    kind: str
    target_lang: str = "ms"
    langs: Any = None       # row languages (``_row, lang, conf``), computed once by the language rules
    near_threshold: float | None = None   # set when near_duplicate is active (exact + near in one pass)
    near_measure: str = "char5"            # near_duplicate's similarity measure
    progress: Any = None    # curate.progress.Stages: a rule with long work adds a bar of its own
    on_rows: Any = None     # a row rule's progress: call with the rows done as it goes (rows x rules bar)
    dups: Any = None        # (rows' _row ids, find_duplicates result) shared by the duplicate rules
    row_text: Any = None    # the row's whole text as an expression over ``rows`` (see :func:`row_text`)


def row_text(rows: pl.DataFrame, ctx: Context) -> pl.Expr:
    """A row rule's whole text of each row: the ``text`` column when ``rows`` has one, else the
    engine's expression over the row's own text columns (``ctx.row_text``; the engine hands the
    rules those columns, shared with the dataset, rather than a second copy of every text)."""
    return pl.col("text") if "text" in rows.columns else ctx.row_text


def with_text(rows: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """``rows`` with a ``text`` column (built here when the engine passed the text columns)."""
    return rows if "text" in rows.columns else rows.with_columns(ctx.row_text.alias("text"))


class Rule:
    """Base class. Subclasses set the class attributes and implement ``match``.

    * ``scope = "cell"``: ``match(cells, ctx)`` gets the cells of the rule's kinds and roles (columns
      ``_cell, _row, field, pos, role, text, given, question``) and returns ``_cell, evidence`` (and
      ``after`` for a rule whose ``fixes`` is true).
      A fix (``fixes``) must read each cell alone (its text and its own columns, never other
      cells): the engine matches the fixes in a row at once on the text before them all and then
      matches again only the cells an earlier fix changed (``engine._match_changed``).
    * ``scope = "row"``: ``match_rows(rows, ctx)`` gets ``_row``, ``id``, ``source``, ``line`` and the
      row's text after fixes (read it with :func:`row_text` or :func:`with_text`: the engine passes
      the text columns, not a joined copy) and returns ``_row, evidence``.
    """

    code: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_action: ClassVar[str] = "flag"
    actions: ClassVar[tuple[str, ...]] = ("drop", "flag")   # actions that make sense for this rule
    fixes: ClassVar[bool] = False                            # match() also returns ``after``
    kinds: ClassVar[tuple[str, ...]] = KINDS
    roles: ClassVar[tuple[str, ...]] = ROLES
    scope: ClassVar[str] = "cell"
    stage: ClassVar[int] = 50       # order: fixes < 50 <= cheap detectors < 80 <= language < 90 <= duplicates
    params: ClassVar[dict[str, Any]] = {}
    switch: ClassVar[str] = ""      # a parameter that, once set, turns a rule that is off by default on (drop)
    slow: ClassVar[bool] = False    # one of the slowest cell rules (a Python checker, language id): started
                                    # first among the rules matched together, so the others fill the other thread

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.params)
        if unknown:
            from curate.errors import UserError
            raise UserError(f"rule {self.code}: unknown setting(s) {', '.join(sorted(unknown))}; "
                            f"known: {', '.join(self.params) or 'none'}")
        self.p: dict[str, Any] = {**self.params}
        for key, value in params.items():
            try:
                self.p[key] = _coerce(value, self.params[key])
            except ValueError:
                from curate.errors import UserError
                raise UserError(f"rule {self.code}: {key}={value!r} is not a valid "
                                f"{type(self.params[key]).__name__} (the default is {self.params[key]!r})") from None

    def applies_to(self, kind: str) -> bool:
        return kind in self.kinds

    def match(self, cells: pl.DataFrame, ctx: Context) -> pl.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError

    def match_rows(self, rows: pl.DataFrame, ctx: Context) -> pl.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError


def _coerce(value: Any, default: Any) -> Any:
    """Turn a CLI string into the type of the parameter's default."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
    if isinstance(default, bool):
        return value.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return value


def regex_match(cells: pl.DataFrame, pattern: str, *, mask: pl.Expr | None = None) -> pl.DataFrame:
    """Cells whose text matches ``pattern``; evidence is the first matched text.

    ``mask`` (a cheap condition) is applied first, so the regex only runs on the cells it keeps."""
    if mask is not None:
        cells = cells.filter(mask)
    return (cells.filter(pl.col("text").str.contains(pattern))
            .select(pl.col("_cell"), pl.col("text").str.extract(f"({pattern})", 1).alias("evidence")))


def fast(pattern: str) -> str:
    """A regex for polars with ASCII word boundaries and ``\\W`` spelled as a class.

    Unicode ``\\b`` keeps Rust's regex off its fast DFA (10-25x slower here); the fields these
    rules read put boundaries next to ASCII words, so the ASCII boundary is what they mean."""
    return pattern.replace(r"\b", r"(?-u:\b)").replace(r"\W", r"[^\p{L}\p{N}_]")


_ASCII_BOUNDARY = r"(?:(?<![A-Za-z0-9_])(?=[A-Za-z0-9_])|(?<=[A-Za-z0-9_])(?![A-Za-z0-9_]))"


def python_regex(pattern: str, flags: int = 0) -> re.Pattern:
    """The same pattern for Python's ``re``, matching what :func:`fast` makes of it in polars (an
    ASCII ``\\b``; ``\\W``, ``\\s`` and case folding Unicode as in Rust): for one text at a time,
    where a one-row polars call would compile the regex again (~0.4 ms)."""
    return re.compile(pattern.replace(r"\b", _ASCII_BOUNDARY), flags)


def any_of(words: list[str], column: str = "text") -> pl.Expr:
    """Cheap literal prefilter (Aho-Corasick, ASCII case-insensitive) run before a costly regex."""
    return pl.col(column).str.contains_any(list(words), ascii_case_insensitive=True)


def empty_matches(fix: bool = False) -> pl.DataFrame:
    return pl.DataFrame(schema=FIX_SCHEMA if fix else MATCH_SCHEMA)


def python_fix(cells: pl.DataFrame, prefilter: pl.Expr, fn) -> pl.DataFrame:
    """Run ``fn(text) -> (after, evidence) | None`` on the cells ``prefilter`` selects."""
    sub = cells.filter(prefilter).select("_cell", "text")
    out_cell, out_ev, out_after = [], [], []
    for cell, text in sub.iter_rows():
        res = fn(text)
        if res is None:
            continue
        after, evidence = res
        if after != text:
            out_cell.append(cell)
            out_ev.append(evidence)
            out_after.append(after)
    return pl.DataFrame({"_cell": out_cell, "evidence": out_ev, "after": out_after}, schema=FIX_SCHEMA)


def python_match(cells: pl.DataFrame, prefilter: pl.Expr, fn, columns=("text",)) -> pl.DataFrame:
    """Run ``fn(*columns) -> evidence | None`` on the cells ``prefilter`` selects."""
    sub = cells.filter(prefilter).select("_cell", *columns)
    out_cell, out_ev = [], []
    for cell, *values in sub.iter_rows():
        ev = fn(*values)
        if ev is not None:
            out_cell.append(cell)
            out_ev.append(ev)
    return pl.DataFrame({"_cell": out_cell, "evidence": out_ev}, schema=MATCH_SCHEMA)


def fmt(template: str, *args) -> pl.Expr:
    """Like ``pl.format`` (built on ``concat_str``; polars 1.x/2.x ``format`` can panic on
    literal-broadcast columns after a filter). Plain values become literals."""
    pieces = template.split("{}")
    if len(pieces) - 1 != len(args):
        raise ValueError("fmt: placeholders and arguments differ")
    parts: list[pl.Expr] = []
    for text, arg in zip(pieces, [*args, None]):
        if text:
            parts.append(pl.lit(text))
        if arg is not None:
            expr = pl.col(arg) if isinstance(arg, str) else arg if isinstance(arg, pl.Expr) else pl.lit(str(arg))
            parts.append(expr.cast(pl.String).fill_null(""))
    return pl.concat_str(parts)
