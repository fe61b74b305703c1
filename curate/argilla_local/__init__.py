"""A local argilla-server without Docker or Elasticsearch (``curate argilla serve``, the test fixture).

- ``venv.py``: the server's own venv with pinned versions (argilla-server 2.8.0, click < 8.2).
- ``launcher.py`` and ``memory_search.py``: run by the SERVER venv's python as a script path; they
  import only argilla_server and the standard library, never curate.
- ``server.py``: starting and stopping redis-server and the launcher from curate's side.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "launcher.py"
