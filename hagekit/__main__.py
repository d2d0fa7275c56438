"""``python -m hagekit``: the same CLI as the ``hagekit`` console script."""

from hagekit.cli.main import main

if __name__ == "__main__":
    main()
