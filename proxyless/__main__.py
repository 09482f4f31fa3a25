"""`python -m proxyless` is the `proxyless` command."""

import sys

from proxyless.cli import main

if __name__ == "__main__":
    sys.exit(main())
