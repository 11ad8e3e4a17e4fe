"""`python -m jointvae_fast.train`: the training CLI (jointvae_fast.training.cli)."""
from .training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
