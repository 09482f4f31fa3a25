"""Parse the `source` string users pass into a record of what to load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .cifar import find_batches_dir
from .errors import DataError

SAMPLE = "sample"
DOWNLOAD_PREFIX = "cifar10:"
FIXED_IMAGE_SIZE = 32  # the embedded sample and CIFAR-10 batches are 32 x 32
SOURCE_FORMS = ("pass 'sample', a CIFAR-10 python directory, 'cifar10:DIR' to download "
                "CIFAR-10 into DIR, or an ImageFolder directory ROOT/<class>/*.jpg")

SourceKind = Literal["sample", "cifar", "cifar-download", "folder"]


@dataclass(frozen=True)
class Source:
    """A parsed data source.

    "sample" -> the embedded sample (path None); "cifar" -> path is the batches directory;
    "cifar-download" -> path is the directory to download into; "folder" -> an ImageFolder root.
    """

    kind: SourceKind
    path: Path | None = None

    @property
    def fixed_size(self) -> bool:
        """True for sources whose images are always 32 x 32."""
        return self.kind != "folder"


def parse_source(source: str) -> Source:
    """'sample' | 'cifar10:DIR' | CIFAR batches dir (or its parent) | ImageFolder dir -> Source."""
    if source == SAMPLE:
        return Source("sample")
    if source.startswith(DOWNLOAD_PREFIX):
        directory = source[len(DOWNLOAD_PREFIX):]
        if not directory:
            raise DataError(f"{source!r} names no directory; write cifar10:DIR, e.g. cifar10:data")
        found = find_batches_dir(Path(directory))
        return Source("cifar", found) if found else Source("cifar-download", Path(directory))
    path = Path(source).expanduser()
    if not path.is_dir():
        raise DataError(f"data source {source!r} is not a directory; {SOURCE_FORMS}")
    found = find_batches_dir(path)
    return Source("cifar", found) if found else Source("folder", path)


def native_image_size(source: str) -> int | None:
    """32 for CIFAR pickle dirs and the embedded sample (fixed-size sources); None for ImageFolder
    dirs (any size, resized). Raises DataError for a source that does not exist."""
    return FIXED_IMAGE_SIZE if parse_source(source).fixed_size else None
