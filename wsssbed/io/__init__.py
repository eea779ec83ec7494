"""Plumbing every layer reads and writes through: images (`imageio`), archives
(`archive`), TOML/JSON config (`configio`), the restricted pickle and npy readers
(`safe_pickle`, `npy`) with their size budgets (`budget`), digests (`digest`), output
checks and atomic writes (`outputs`), the home folder (`home`), run provenance
(`provenance`) and optional dependencies (`extras`). Imports nothing of wsssbed's but
`errors`."""
