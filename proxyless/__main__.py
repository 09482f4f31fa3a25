"""`python -m proxyless` is the `proxyless` command."""

from proxyless.cli import entry

if __name__ == "__main__":
    entry()
