"""`python -m lakehouse_assets.sample`: write a synthetic transaction log into a landing folder."""

from lakehouse_assets.lib.sample import main

if __name__ == "__main__":
    main()
