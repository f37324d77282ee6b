"""`python -m amzkit ...`: the command line (amzkit.app.cli)."""

import sys

from amzkit.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
