"""Disentanglement and clustering metrics (NumPy/SciPy only): accuracy, MIG, circular statistics."""
