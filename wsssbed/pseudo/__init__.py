"""Pseudo-label generators and the resumable writer behind `wsssbed pseudo-labels`."""
