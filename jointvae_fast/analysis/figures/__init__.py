"""Figures of a trained model: latent traversals, image editing, image grids, matplotlib plots."""
