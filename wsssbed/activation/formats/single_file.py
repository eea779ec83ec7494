"""Formats that keep one file per image, `<id><suffix>`."""

from __future__ import annotations

from pathlib import Path

from wsssbed.activation.base import MapFormat
from wsssbed.errors import InputError
from wsssbed.io.outputs import inside


class SingleFileFormat(MapFormat):
    """`<id><suffix>` per image; the keys are inside the file."""

    suffix: str = ""

    @property
    def pattern(self) -> str:  # type: ignore[override]
        return f"<id>{self.suffix}"

    def list_ids(self, folder: Path) -> dict[str, tuple[int, ...] | None]:
        if not folder.is_dir():
            raise InputError("activation folder not found", folder)
        n = len(self.suffix)
        return {p.name[:-n]: None for p in folder.iterdir() if p.name.endswith(self.suffix)}

    def is_map_file(self, name: str) -> bool:
        return name.endswith(self.suffix)

    def where(self, folder: Path, image_id: str) -> Path:
        # the folder is resolved once per format object (a sweep's), each file's name
        # is checked on every call (`inside`)
        bases = self.__dict__.setdefault("_resolved", {})
        base = bases[folder] if folder in bases else bases.setdefault(folder, folder.resolve())
        return inside(folder, f"{image_id}{self.suffix}", base=base)
