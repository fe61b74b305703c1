"""Wrong answers to arithmetic, checked with a safe evaluator (an AST walker; never ``eval``).

Only two situations are judged, so correct reasoning (the GSM8K control set) is never flagged:

1. the question is a plain arithmetic expression ("What is 25 * 4?", "Kira 12 x 7") and the
   response contains numbers, none of which is the value;
2. the response states ``expr = value`` with both sides plain arithmetic ("48/2 = 24"), and the
   sides differ by more than the rounding the written value allows.
Anything else (units between the numbers, variables, words) is left alone.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from functools import lru_cache
from typing import Iterator

import polars as pl

from curate.clean.base import Rule, python_match

_CUR = r"(?:\$|RM\s?|Rp\.?\s?|€|£)"
_NUM = rf"{_CUR}?(?:\d+(?:,\d{{3}})*(?:\.\d+)?|\.\d+)%?"
_OP = r"[-+*/×xX÷^−·]"
_TERM = rf"\(*\s*[-−]?\s*{_NUM}\s*\)*(?:\s*{_OP}\s*\(*\s*[-−]?\s*{_NUM}\s*\)*)*"
CHAIN = re.compile(rf"(?<![\w.,/^*+-])({_TERM}(?:\s*=\s*{_TERM})+)(?![\w.,]?\d)(?!\s*[/*^×÷])")
_NUM_RE = re.compile(rf"(?<![\w.]){_CUR}?-?\d+(?:[.,]\d+)*%?")

LEAD = (r"(?:(?:what|how\s+much)\s+is|what's|calculate|compute|evaluate|solve|simplify|work\s+out"
        r"|find(?:\s+the\s+(?:value|result|answer|sum|product)\s+of)?|berapakah|berapa|kira(?:kan|lah)?|hitung(?:kan|lah)?"
        r"|nilaikan|selesaikan|cari(?:kan)?(?:\s+(?:nilai|hasil|jawapan|jawaban))?|tentukan(?:\s+(?:nilai|hasil))?"
        r"|apakah\s+(?:hasil|jawapan|jawaban|nilai)(?:\s+(?:bagi|daripada|dari))?|answer|jawab(?:lah)?)"
        r"(?:\s+(?:the\s+following|berikut|this|ini))?(?:\s+(?:expression|equation|sum|ungkapan|persamaan|soalan|question|operasi))?"
        r"\s*[:\-]?")
# (Rust regex, vectorized pre-filter) the question is only an arithmetic expression
QUESTION_RS = (rf"(?is)^\W*(?:{LEAD})?\s*\(*\s*-?\s*[$]?\d[\d\s.,()%$]*[-+*/×xX÷^−]\s*[\d(][\d\s.,+\-*/×xX÷^()%$−]*"
               r"(?:=\s*)?\??\s*\.?\s*$")
_QUESTION_PY = re.compile(rf"(?is)^\W*(?:{LEAD})?\s*({_TERM})\s*(?:=\s*)?\??\s*\.?\s*$")
# (Rust regex) the response has "a op b = c" somewhere
EQUATION_RS = r"\d\s*[-+*/×xX÷^−]\s*\(?\s*-?\s*[$]?\d[\d.,]*%?\s*\)*\s*=\s*-?\s*(?:\$|RM\s?)?\d"

_BIN = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.Pow: operator.pow}


class Unsafe(ValueError):
    pass


def safe_eval(expr: str) -> float:
    """Evaluate an arithmetic expression (numbers, + - * / ** and parentheses) without ``eval``."""
    if len(expr) > 200:
        raise Unsafe("too long")
    tree = ast.parse(expr, mode="eval")
    return float(_walk(tree.body))


def _walk(node) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _walk(node.operand)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
        left, right = _walk(node.left), _walk(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > 1e6):
            raise Unsafe("power too large")
        if isinstance(node.op, ast.Div) and right == 0:
            raise Unsafe("division by zero")
        value = _BIN[type(node.op)](left, right)
        if isinstance(value, complex) or not math.isfinite(value) or abs(value) > 1e18:
            raise Unsafe("out of range")
        return value
    raise Unsafe(f"not arithmetic: {type(node).__name__}")


def to_python(term: str) -> tuple[str, bool]:
    """Normalise a written term ("$1,200 x 3", "20% × 5") to Python syntax; also says if % was used."""
    t = re.sub(_CUR, "", term)
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)
    percent = "%" in t
    t = re.sub(r"(\d(?:\.\d+)?)%", r"(\1/100)", t)
    t = t.replace("×", "*").replace("·", "*").replace("÷", "/").replace("−", "-").replace("^", "**")
    t = re.sub(r"(?<=[\d)\s])[xX](?=[\s(\d])", "*", t)
    return t, percent


def _decimals(number: str) -> int:
    m = re.search(r"\.(\d+)", number)
    return len(m.group(1)) if m else 0


def _plain_number(term: str) -> str | None:
    m = re.fullmatch(rf"\s*\(*\s*([-−]?\s*{_NUM})\s*\)*\s*", term)
    return m.group(1) if m else None


def _close(value: float, written: float, decimals: int) -> bool:
    """``written`` is ``value`` shown with ``decimals`` places (rounded or truncated)."""
    eps = 1e-9 * max(1.0, abs(value))
    if abs(value - written) <= 0.5 * 10 ** -decimals + eps:
        return True
    scale = 10 ** decimals
    return abs(math.trunc(value * scale + math.copysign(eps * scale, value)) / scale - written) <= eps


_OPS_BEFORE = set("+-*/×÷^=(−·xX0123456789.,")


def _standalone(text: str, start: int, end: int) -> bool:
    """The chain ``text[start:end]`` is the whole arithmetic: no operator, digit or variable glued on
    either side ("S + 143 = 184", "60 students x 2/3 = 40", "8 x 1 1/2 = 12", "100 = 5A")."""
    before = text[:start].rstrip()
    if before and (before[-1] in _OPS_BEFORE and not (before[-1] in "xX" and len(before) > 1 and before[-2].isalpha())):
        return False
    # what follows the chain, not its own trailing spaces (CHAIN's last term takes them): in
    # "walks 15 + 9 = 24 flights" the word after the value is not glued to it
    after = text[start + len(text[start:end].rstrip()):]
    if after[:1].isalnum():
        return False
    nxt = after.lstrip()[:1]
    return not (nxt and nxt in "+-*/×÷^=−·(")


# Every character a CHAIN match can hold (Unicode digits and spaces, as CHAIN's \d and \s): a match
# has an "=" and lies inside one run of them.
_CHAIN_RUN = re.compile(r"[\d\s()\-−+*/×xX÷^·=,.%$€£RMp]*")


@lru_cache(maxsize=1 << 16)
def _window_chains(window: str) -> tuple[tuple[int, int], ...]:
    """CHAIN's matches in one window of :func:`chains` (cached: a corpus repeats its worked steps)."""
    return tuple(m.span() for m in CHAIN.finditer(window))


def chains(text: str) -> list[tuple[int, int]]:
    """The spans of ``CHAIN.finditer(text)``, searched only inside the runs of chain characters that
    hold an "=", each with the character before it and the two after it (all CHAIN's lookarounds
    read): the same matches in the same order, without trying the regex at every position of a long
    text (a response's equations are a few dozen of its hundreds of characters)."""
    return list(_chains(text))


def _chains(text: str) -> Iterator[tuple[int, int]]:
    """:func:`chains` one at a time (a caller may stop early)."""
    n = len(text)
    i = text.find("=")
    if i < 0:
        return
    back = text[::-1]
    while i >= 0:
        start = i - (_CHAIN_RUN.match(back, n - i).end() - (n - i))
        end = _CHAIN_RUN.match(text, i + 1).end()
        lo = max(start - 1, 0)
        for s, e in _window_chains(text[lo:min(end + 2, n)]):
            yield lo + s, lo + e
        i = text.find("=", end)


def equations(text: str, limit: int | None = None) -> list[str]:
    """The standalone ``expr = value`` chains of ``text``, in order (with ``limit``: the first
    ``limit`` of them at most)."""
    found = []
    for s, e in _chains(text):
        if _standalone(text, s, e):
            found.append(text[s:e])
            if len(found) == limit:
                break
    return found


def check_equations(text: str, max_equations: int = 2) -> str | None:
    """The first false ``expr = value`` in ``text`` (as evidence), or None.

    Worked solutions with many steps (more than ``max_equations`` equations) are not judged: their
    intermediate lines restate quantities with units and rounding that plain arithmetic cannot read.
    """
    found = equations(text, max_equations + 1)  # one more than judged says there are too many
    if len(found) > max_equations:
        return None
    for chain in found:
        if _false_chain(chain):
            return chain.strip()
    return None


@lru_cache(maxsize=1 << 16)
def _false_chain(chain: str) -> bool:
    """Whether an ``a = b (= c ...)`` chain states a false equality. Cached: a corpus repeats its
    worked steps ("6 * 20 = 120") across rows, and parsing and evaluating them is the rule's cost."""
    parts = [p.strip() for p in chain.split("=")]
    if not any(re.search(rf"\d\s*\)*\s*{_OP}", p) for p in parts):
        return False
    values = []
    try:
        for p in parts:
            py, percent = to_python(p)
            values.append((safe_eval(py), p, percent))
    except (SyntaxError, Unsafe, ValueError, ZeroDivisionError, OverflowError, TypeError):
        return False
    return not all(_equal(v1, p1, pc1, v2, p2, pc2) for (v1, p1, pc1), (v2, p2, pc2) in zip(values, values[1:]))


def _truncated(value: float, written: str) -> bool:
    """``written`` is the leading digits of a large ``value`` ("$1920" for 19,200): a formatting cut
    (seen when "19,200" lost its tail), not an arithmetic error, so it is not judged."""
    digits = re.sub(r"\D", "", written.split(".")[0])
    whole = str(int(abs(value))) if abs(value) >= 1000 and float(value).is_integer() else ""
    return bool(digits) and len(digits) < len(whole) and whole.startswith(digits)


def _equal(v1, p1, pc1, v2, p2, pc2) -> bool:
    """Only ``expression = plain number`` pairs are judged; anything else counts as equal."""
    n2 = _plain_number(p2)
    if n2 is None or _plain_number(p1) is not None:
        return True
    if _truncated(v1, n2):
        return True
    d = _decimals(n2)
    return _close(v1, v2, d) or (pc2 and _close(v1, v2 * 100, d))


def _number_values(token: str) -> list[float]:
    """Readings of a written number: 1,000 / 1.000 (Indonesian thousands) / 2,5 (decimal comma)."""
    t = re.sub(_CUR, "", token).replace("%", "").replace("−", "-")
    out = []
    for cand in (t.replace(",", ""), t.replace(".", "").replace(",", "."), t.replace(",", ".")):
        try:
            out.append((float(cand), _decimals(cand)))
        except ValueError:
            pass
    return out


def check_answer(question: str, response: str) -> str | None:
    """When ``question`` is a plain arithmetic expression: evidence if no number in ``response`` is its value."""
    m = _QUESTION_PY.match(question.strip())
    if not m:
        return None
    try:
        py, percent = to_python(m.group(1))
        value = safe_eval(py)
    except (SyntaxError, Unsafe, ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None
    if percent:
        return None
    tokens = _NUM_RE.findall(response)
    if not tokens:
        return None
    for tok in tokens:
        for written, d in _number_values(tok):
            if _close(value, written, d):
                return None
    shown = f"{value:.6g}"
    return f"{m.group(1).strip()} is {shown}; answer says {', '.join(tokens[:3])}"


class WrongMath(Rule):
    code = "wrong_math"
    description = "wrong answer to an arithmetic question, or a false 'expr = value' in the response (safe evaluator)"
    default_action = "drop"
    roles = ("response",)
    kinds = ("sft", "chat", "rm")
    params = {"max_equations": 2}
    slow = True  # a Python checker on every candidate

    def match(self, cells, ctx):
        # cheap literal/length filters first; the regexes run only on what they keep
        eq = cells.filter(pl.col("text").str.contains("=", literal=True))
        eq = eq.filter(pl.col("text").str.contains(EQUATION_RS))
        qs = []
        for col in ("question", "given"):  # the expression may be the instruction or the sft input
            # (QUESTION_RS is anchored, so it fails fast at the start of most texts: a prefilter
            # for a digit (Unicode \d, without a literal for the regex to skip to) took 4x longer)
            q = cells.filter(pl.col(col).str.len_chars() < 200)
            qs.append(q.filter(pl.col(col).str.contains(QUESTION_RS)))
        cand = pl.concat([eq, *qs]).unique("_cell", keep="first", maintain_order=True)
        # check_answer needs a digit (Python's \d: 0-9 or a non-ASCII one) in the question it reads
        cand = cand.with_columns(_may_hold_digit("question").alias("_qd"), _may_hold_digit("given").alias("_gd"))

        def judge(text: str, question: str, given: str, qd: bool, gd: bool) -> str | None:
            return ((check_answer(question, text) if qd else None) or (check_answer(given, text) if gd else None)
                    or check_equations(text, self.p["max_equations"]))

        return python_match(cand, pl.lit(True), judge, columns=("text", "question", "given", "_qd", "_gd"))


def _may_hold_digit(col: str) -> pl.Expr:
    """False where ``col`` surely holds no digit Python's ``\\d`` matches (no 0-9, all ASCII) or is empty."""
    c = pl.col(col)
    return ((c.str.contains("[0-9]") | (c.str.len_bytes() != c.str.len_chars())) & (c != "")).fill_null(False)
