"""``python -m redpromise worker module:attr`` runs a worker process."""

import sys

from ._runner import main

if __name__ == "__main__":
    sys.exit(main())
