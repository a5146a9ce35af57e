"""Imported once by the parsers' forkserver (a preload module): the serving process's main script, loaded there so
that a parse child forked from it does not run that script again.

Every process started from a forkserver first imports the parent's `__main__` by path (runpy, as `__mp_main__`)
unless the forkserver already holds it. CPython's own `__main__` preload never received the path on 3.11 and 3.12
(gh-137996, fixed in 3.13.8): each parse paid the import of `faas`'s or a benchmark's whole module graph again, about
0.1 s of CPU per document. This module does what that preload meant to, with the path `ParserProcesses` leaves in
the environment the forkserver inherits.
"""

from __future__ import annotations

import os
from multiprocessing import process, spawn

from plugins.ingestion.processes import MAIN_PATH_ENV

_path = os.environ.get(MAIN_PATH_ENV)
if _path and os.path.isfile(_path):
    process.current_process()._inheriting = True  # type: ignore[attr-defined]
    try:
        spawn.import_main_path(_path)
    except Exception:
        pass  # a script that fails here fails as before, in each child that imports it
    finally:
        del process.current_process()._inheriting  # type: ignore[attr-defined]
