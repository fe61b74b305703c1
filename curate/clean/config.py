"""Clean settings: per-rule actions and parameters, the target language; from TOML and the CLI.

A config file (``--config clean.toml``)::

    target_lang = "ms"
    examples = 3                 # examples per rule in the report

    [rules.fix_indonesian]
    action = "fix"               # fix | drop | flag | off

    [rules.near_duplicate]
    threshold = 0.85

    [rules.length_limit]
    output_max = 8000

CLI flags override the file: ``--rule CODE=ACTION``, ``--set CODE.param=VALUE``, ``--target-lang``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from curate.errors import UserError

# "any": no language is wanted yet (e.g. before translation): the language rules match nothing
LANGS = ("ms", "id", "en", "ko", "any")


@dataclass
class CleanConfig:
    target_lang: str = "ms"
    actions: dict[str, str] = field(default_factory=dict)          # code -> action override
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> {param: value}
    examples: int = 3
    progress: bool = False

    @classmethod
    def load(cls, path: str | Path | None = None, *, rules: Iterable[str] = (), sets: Iterable[str] = (),
             target_lang: str | None = None) -> "CleanConfig":
        cfg = cls.from_toml(path) if path else cls()
        for item in rules:
            cfg.set_action_arg(item)
        for item in sets:
            cfg.set_param_arg(item)
        if target_lang:
            cfg.target_lang = target_lang
        cfg.validate()
        from curate.clean.registry import BY_CODE

        for code, action in cfg.actions.items():
            switch = BY_CODE[code].switch
            if switch and action != "off" and not cfg.params.get(code, {}).get(switch):
                raise UserError(f"rule {code} needs {switch}: e.g. curate clean --{switch} FILE "
                                f"(or {switch} = [...] under [rules.{code}] in the config)")
        return cfg

    @classmethod
    def from_toml(cls, path: str | Path) -> "CleanConfig":
        from curate.io.files import load_toml

        path = Path(path)
        data = load_toml(path, what="config file")
        cfg = cls()
        unknown = set(data) - {"target_lang", "examples", "rules"}
        if unknown:
            raise UserError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; "
                            "expected target_lang, examples and [rules.CODE] tables")
        cfg.target_lang = data.get("target_lang", cfg.target_lang)
        cfg.examples = int(data.get("examples", cfg.examples))
        for code, table in (data.get("rules") or {}).items():
            if not isinstance(table, dict):
                raise UserError(f"{path}: [rules.{code}] must be a table (action = ..., param = ...)")
            table = dict(table)
            if "action" in table:
                cfg.actions[code] = str(table.pop("action"))
            if table:
                cfg.params.setdefault(code, {}).update(table)
        return cfg

    def set_action_arg(self, item: str) -> None:
        code, sep, action = item.partition("=")
        if not sep or not code.strip() or not action.strip():
            raise UserError(f"--rule {item!r}: expected CODE=ACTION, e.g. --rule refusal=flag")
        self.actions[code.strip()] = action.strip().lower()

    def set_param_arg(self, item: str) -> None:
        key, sep, value = item.partition("=")
        code, dot, param = key.strip().partition(".")
        if not sep or not dot or not code or not param:
            raise UserError(f"--set {item!r}: expected CODE.PARAM=VALUE, e.g. --set near_duplicate.threshold=0.85")
        self.params.setdefault(code, {})[param] = value.strip()

    def validate(self) -> None:
        from curate.clean.base import ACTIONS
        from curate.clean.registry import BY_CODE

        if self.target_lang not in LANGS:
            raise UserError(f"--target-lang {self.target_lang!r}: choose one of {', '.join(LANGS)}")
        for code in {*self.actions, *self.params}:
            if code not in BY_CODE:
                raise UserError(f"unknown rule {code!r}; `curate clean --list-rules` lists them")
        for code, params in self.params.items():
            BY_CODE[code](**params)  # refuses an unknown setting or a value of the wrong type now, not mid-run
        for code, action in self.actions.items():
            rule = BY_CODE[code]
            allowed = (*rule.actions, "off")
            if action not in ACTIONS or action not in allowed:
                raise UserError(f"rule {code}: action {action!r} is not available; choose {'|'.join(allowed)}")

    def action_for(self, code: str, default: str) -> str:
        if code in self.actions:
            return self.actions[code]
        from curate.clean.registry import BY_CODE

        switch = getattr(BY_CODE.get(code), "switch", "")
        if default == "off" and switch and self.params.get(code, {}).get(switch):
            return "drop"   # e.g. contaminated: on as soon as eval files are given
        return default
