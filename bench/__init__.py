"""jaxgmm's benchmarks: ``python bench/run.py`` (see ``bench/README.md``).

``harness`` runs the parts, each measurement in its own process (``child``),
and writes the report; every other module is one part, with ``measure(ctx)``
(in the parent: which children to start), the children's functions, and
``markdown(results, ctx)``; ``common`` holds what they share.
"""
