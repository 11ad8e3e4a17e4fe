"""Analysis of a trained Joint-VAE: the evaluation CLI, metrics and the paper's figures.

- cli.py       `python -m jointvae_fast.evaluate`: parse, load, evaluate, print a summary
- sources.py   what is evaluated (run directory, checkpoint, checkpoint of the paper's code)
- split.py     the test split (images, labels, factors)
- encoding.py  posterior parameters of the split; per-latent KL, classes, reconstruction NLL
- latent_kl.py the KL per latent from the best source at hand (test split, recorded evaluation, training log,
               checkpoint metadata, prior samples): the explorer's and export's ranking of the units
- report.py    metrics.json, figures and index.html
- supervised_ceiling.py  the encoder trained WITH the labels: the ceiling of the unsupervised accuracy
                         (`python -m jointvae_fast.analysis.supervised_ceiling`)
- metrics/     accuracy (Hungarian, majority), MIG, circular statistics (NumPy only)
- figures/     image editing, matplotlib plots (latent traversals and image grids: jointvae_fast.grids)
"""
