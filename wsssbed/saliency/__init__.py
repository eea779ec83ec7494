"""Training-free saliency sources, written as saliency PNGs like the catalogued SOD maps."""
