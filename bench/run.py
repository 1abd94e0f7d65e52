"""jaxgmm benchmark suite: ``python bench/run.py`` writes ``bench/RESULTS.md``.

The documented command; the harness is ``bench/harness.py`` (``--help`` lists the
parts and options, ``bench/README.md`` describes them).  ``python -m bench`` and
``python -m bench.run`` do the same.
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.harness import main

if __name__ == "__main__":
    main()
