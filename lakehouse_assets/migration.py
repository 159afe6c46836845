"""`python -m lakehouse_assets.migration`: move a lakehouse from its DuckDB file into DuckLake."""

import sys

from lakehouse_assets.lib.migration import main

if __name__ == "__main__":
    sys.exit(main())
