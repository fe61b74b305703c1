"""Human review in Argilla: ``push`` rows as records, ``pull`` the answers back into curate rows.

See :mod:`curate.label.settings` for what each task shows annotators and
:mod:`curate.label.merge` for how several annotators' answers are merged.

    client = connect()                      # ARGILLA_API_URL / ARGILLA_API_KEY
    summary = push(frames, "review-ms", client)
    frames, report = pull(client, "review-ms")
    write_pulled(frames, report, "datasets/labelled")
"""

from curate.label.client import connect
from curate.label.pull import pull, write_pulled
from curate.label.push import push

__all__ = ["connect", "pull", "push", "write_pulled"]
