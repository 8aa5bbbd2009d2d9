"""`python -m flowmusic_async`: the `flowmusic` command line."""

import sys

from flowmusic_async._cli import main

if __name__ == "__main__":
    sys.exit(main())
