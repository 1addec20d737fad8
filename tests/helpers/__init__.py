"""What the tests share beyond fixtures: throwaway servers, the browser harness, builders and corpora.

Not test modules: the test files of every folder import them as ``helpers.*``
(pyproject.toml puts ``tests/`` on ``sys.path``).

- :mod:`.servers`: a free loopback port, waiting for a server to answer, stopping it, ``running(server)``;
- :mod:`.pgserver` (PostgreSQL, the ``pg_server`` fixtures, registered in ``tests/conftest.py``),
  :mod:`.redisserver`, :mod:`.s3server` (moto) and :mod:`.mlflowserver` (``mlflow server``);
- :mod:`.labharness`: a real JupyterLab in headless Chromium;
- :mod:`.shell`: a real IPython shell with the extension loaded;
- :mod:`.mlflowstate`: leaving MLflow as it was found, and starting without anyone's tracking URI;
- :mod:`.stores`: a store's catalog rows and files, to show an operation changed nothing;
- :mod:`.notebooks`: notebooks built with ``nbformat``, exported modules run in subprocesses, and their code's shape;
- :mod:`.names` and :mod:`.payloads`: the corpus of hostile names and the injection corpus;
- :mod:`.lineage`: walking a store's lineage graph upward;
- :mod:`.catalogs`: catalog databases at an older schema revision;
- :mod:`.reliability_workers`: the worker processes of the reliability tests (run as a script).
"""

from __future__ import annotations

from pathlib import Path

#: The repository's root folder (``notebooks/``, ``docs/``, ``jupyter-config/`` are found from it).
REPO = Path(__file__).resolve().parents[2]
