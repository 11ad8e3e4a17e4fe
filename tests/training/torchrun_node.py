"""What each torchrun worker of tests/training/test_torchrun_nodes.py runs: the training CLI, then its rank's
final weights saved as <WEIGHTS_DIR>/rank<RANK>.pt (only rank 0 writes the run directory)."""
import os
import sys
from pathlib import Path

import torch

import jointvae_fast.training.cli as train_mod

original = train_mod.train


def capture(config, model, *args, **kwargs):
    result = original(config, model, *args, **kwargs)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, Path(os.environ["WEIGHTS_DIR"]) / f"rank{os.environ['RANK']}.pt")
    return result


if __name__ == "__main__":
    torch.set_num_threads(1)
    train_mod.train = capture
    sys.exit(train_mod.main(sys.argv[1:]))
