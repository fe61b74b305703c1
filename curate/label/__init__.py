"""Human review in Argilla: ``push`` rows as records, ``pull`` the answers back into curate rows.

See :mod:`curate.label.settings` for what each task shows annotators and
:mod:`curate.label.merge` for how several annotators' answers are merged.
"""

from curate.label.client import connect
from curate.label.push import push

__all__ = ["connect", "push"]
