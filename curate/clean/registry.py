"""Every clean rule, registered in one place (the order within a stage is the order here)."""

from __future__ import annotations

from curate.clean.base import Rule
from curate.clean.rules.alpaca import EmptyCode, MediaRequest, MergedInstruction, NeedsInternet, UnclearInstruction
from curate.clean.rules.arith import WrongMath
from curate.clean.rules.chat import TurnOrder
from curate.clean.rules.contamination import Contaminated
from curate.clean.rules.duplicates import ExactDuplicate, NearDuplicate
from curate.clean.rules.encoding import ControlChars, LiteralEscapes, Mojibake
from curate.clean.rules.language import FixIndonesian, Indonesian, UntranslatedField, WrongLanguage
from curate.clean.rules.length import LengthLimit
from curate.clean.rules.markers import EmptyOutput, EmptyPrompt, LabelPrefix, NAOutput, NoInputMarker
from curate.clean.rules.refusal import Refusal
from curate.clean.rules.tokens import TooManyTokens

RULES: tuple[type[Rule], ...] = (
    # fixes, in the order they run
    Mojibake, LiteralEscapes, ControlChars, NoInputMarker, LabelPrefix, FixIndonesian,
    # cheap detectors on every row
    EmptyPrompt, EmptyOutput, NAOutput, TurnOrder, NeedsInternet, MergedInstruction, EmptyCode, MediaRequest,
    Refusal, WrongMath, UntranslatedField, LengthLimit, TooManyTokens, UnclearInstruction,
    # on the rows still kept: language identification, eval-set contamination, then duplicates
    WrongLanguage, Indonesian, Contaminated, ExactDuplicate, NearDuplicate,
)
BY_CODE: dict[str, type[Rule]] = {r.code: r for r in RULES}
assert len(BY_CODE) == len(RULES), "duplicate rule code"


def rule_rows() -> list[dict]:
    """One dict per rule for ``--list-rules``: code, default action, actions, kinds, params, description."""
    return [{"code": r.code, "default_action": r.default_action, "actions": [*r.actions, "off"],
             "kinds": list(r.kinds), "roles": list(r.roles) if r.scope == "cell" else ["row"],
             "params": dict(r.params), "description": r.description} for r in sorted(RULES, key=lambda r: r.stage)]
