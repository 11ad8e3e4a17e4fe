"""What a run leaves on disk, read and written alike by training, analysis, the explorer and the pretrained
registry: the checkpoint file format (checkpoint.py) and the names inside a run directory (run_layout.py).
"""
