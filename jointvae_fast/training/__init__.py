"""Training: the CLI, its configuration, one optimisation step, the loop, distributed setup, checkpoints.

- cli.py          `python -m jointvae_fast.train`: parse, resolve the config, set up, run the loop
- config.py       the config schema, defaults and the paper's presets
- step.py         one optimisation step (eager, optionally replayed as a CUDA graph)
- loop.py         the training loop: batches, schedules, logging, checkpoints, stop requests
- distributed.py  torch.distributed setup and the few collectives the loop needs
- checkpoint.py   our checkpoint format (atomic save, load)
"""
