"""Latent grids (traversal.py: traversals, prior latents) and image grids (images.py)."""
