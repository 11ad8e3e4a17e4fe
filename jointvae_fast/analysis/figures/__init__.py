"""Figures of a trained model: image editing, matplotlib plots (latent traversals and image grids: jointvae_fast.grids)."""
