"""Latent grids of a model: traversals and conditioned samples (traversal.py), and image grids written
as one picture (images.py). Used by training's first-look pictures, the evaluation report and the explorer.
"""
