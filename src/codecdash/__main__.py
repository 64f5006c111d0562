"""``python -m codecdash`` runs the same CLI as the ``codecdash`` console script."""

from codecdash.cli import main

if __name__ == "__main__":
    main()
