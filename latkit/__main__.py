"""`python -m latkit` is the `latkit` command; torchrun runs it as `torchrun ... -m latkit`."""

from latkit.cli import main

if __name__ == "__main__":
    main()
