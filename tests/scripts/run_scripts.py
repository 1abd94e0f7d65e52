"""Run several multi-device check scripts in one process (one JAX start, one
set of forced devices): ``python run_scripts.py a.py b.py ...``.

Each script runs as ``__main__`` in a fresh namespace, in the order given; its
output and, if it raised, the traceback are printed between marker lines that
``tests/test_sharding.py`` reads.  One script's failure does not stop the others.
"""

import contextlib
import io
import pathlib
import runpy
import sys
import traceback

HERE = pathlib.Path(__file__).parent
failed = False
for name in sys.argv[1:]:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(HERE / name), run_name="__main__")
        ok = out.getvalue().strip().endswith("OK")
    except BaseException:  # an assert, an XLA error, a SystemExit: report it, go on
        out.write(traceback.format_exc())
        ok = False
    failed |= not ok
    print(f"=== {name} {'OK' if ok else 'FAILED'}")
    print(out.getvalue(), end="" if out.getvalue().endswith("\n") else "\n")
    print(f"=== end {name}", flush=True)
sys.exit(1 if failed else 0)
