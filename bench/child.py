"""Entry point of a measurement's own process: ``python bench/child.py MODULE:FUNCTION JSON``.

Started by :func:`bench.common.spawn`.  Imports the ``bench`` package from this
checkout and ``jaxgmm`` from the tree named by ``JAXGMM_BENCH_TREE`` (default this
checkout), calls the function with the JSON keyword arguments, and prints its
result as one line ``RESULT {json}``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def main(argv):
    target, kwargs = argv[1], json.loads(argv[2])
    tree = os.path.abspath(os.environ.get("JAXGMM_BENCH_TREE", ROOT))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]
    sys.path.insert(0, ROOT)
    importlib.import_module("bench")  # this checkout's bench package, whatever the tree holds
    sys.path.insert(0, tree)
    import jaxgmm
    where = os.path.dirname(os.path.dirname(os.path.abspath(jaxgmm.__file__)))
    if where != tree:
        raise SystemExit(f"jaxgmm was imported from {where}, not from the tree under test {tree}")
    module, function = target.split(":")
    out = getattr(importlib.import_module(module), function)(**kwargs)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv)
