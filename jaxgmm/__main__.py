"""``python -m jaxgmm``: the same as the ``jaxgmm`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
