"""``python -m introscope``: the same as the ``introscope`` command."""

import sys

from introscope.cli import main

if __name__ == "__main__":
    sys.exit(main())
