"""``python -m neuroear`` is the same as the ``neuroear`` command."""

import sys

from neuroear.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
