"""Training: the CLI, its configuration, one optimisation step, the loop, distributed setup, checkpoints.

- cli.py          `python -m jointvae_fast.train`: parse, resolve the config, set up, run the loop
- config.py       the config schema (from which DEFAULTS, the flags and the typed RunConfig derive), resolution,
                  the presets' table
- presets.py      the presets as data (the paper's Appendix C and synthetic-chairs)
- allocator.py    the CPU allocator setting the CLI makes at its start
- batches.py      the training images on the device, the seeded batch order, the run's length
- step.py         one optimisation step (eager); cuda_graph.py replays it as one CUDA graph
- loop.py         the training loop: schedules, stop requests, log and checkpoint cadence
- term_log.py     loss terms on the device, flushed to log.jsonl and the progress display
- tensorboard_log.py  --tensorboard: the log's scalars and the first_look.py grids as TensorBoard events
- first_look.py   the sample and traversal grids (samples.png, traversal.png, TensorBoard)
- run_dir.py      a run directory's files and checkpoints; resuming from them
- checkpoint.py   our checkpoint file format (atomic save, load)
- distributed.py  torch.distributed setup and the few collectives the loop needs
"""
