"""`python -m jointvae_fast.evaluate`: the evaluation CLI (jointvae_fast.analysis.cli)."""
from .analysis.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
