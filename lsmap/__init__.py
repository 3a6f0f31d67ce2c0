"""lsmap: earthquake-triggered landslide mapping on large high-resolution scenes.

Stages (one module each): gf6/preprocess/dem -> tiling/predict -> vectorize -> stats,
with data/train/metrics/losses for model training and models/ for the architectures.
"""

__version__ = "0.1.0"
