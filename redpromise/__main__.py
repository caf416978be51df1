"""``python -m redpromise …``: the ``redpromise`` command (docs/cli.md)."""

import sys

from redpromise.cli import main

if __name__ == "__main__":
    sys.exit(main())
