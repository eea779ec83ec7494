"""The catalogue of pinned manifests, shipped inside the wheel as `wsssbed.manifests`.

Layout: `<dataset>/<kind>/<name>.toml` (see docs/manifests.md). No code lives here.
"""
