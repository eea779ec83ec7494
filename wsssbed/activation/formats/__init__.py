"""Activation-map formats, one module each; each registers itself in `FORMATS`."""
