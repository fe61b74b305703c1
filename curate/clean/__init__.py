"""The clean stage: registered rules that fix, flag or drop rows (see ``docs/clean.md``).

``clean(frames, config) -> CleanResult`` and ``clean_dir(in, out, config, dry_run=...)``.
"""

from curate.clean.config import CleanConfig
from curate.clean.engine import CleanResult, clean, clean_dir
from curate.clean.registry import BY_CODE, RULES, rule_rows

__all__ = ["BY_CODE", "RULES", "CleanConfig", "CleanResult", "clean", "clean_dir", "rule_rows"]
