"""Data for proxyless: the embedded CIFAR-10 sample, CIFAR-10 python batches (optionally downloaded)
and ImageFolder directories, served as normalized tensors with torch-only augmentation.

Entry points: `load_splits` (source -> `Splits` of datasets), `limit_train`, `make_loader`, `native_image_size`,
`download_cifar10`. Every bad-input problem raises `DataError` with the fix in its message.
"""

from .download import download_cifar10
from .errors import DataError
from .loader import make_loader
from .sources import native_image_size
from .splits import Splits, check_limit, limit_train, load_splits

__all__ = ["DataError", "Splits", "check_limit", "download_cifar10", "limit_train", "load_splits", "make_loader",
           "native_image_size"]
