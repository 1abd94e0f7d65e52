"""``python -m bench``: the same as ``python bench/run.py``."""

from bench.harness import main

main()
