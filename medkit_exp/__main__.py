"""``python -m medkit_exp``: the Hydra training application (see medkit_exp.cli)."""

from medkit_exp.cli import main

if __name__ == "__main__":
    main()
