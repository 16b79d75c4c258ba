"""licrt runtime: read a bundle, run its stage graphs, code pixels to bytes and back.

The runtime never imports torch.

Example:
    >>> from licrt.runtime import Codec
    >>> codec = Codec.open("bundle")                  # doctest: +SKIP
    >>> image = codec.decompress(codec.compress("photo.png"))   # doctest: +SKIP
"""

from importlib import import_module

from .errors import BackendError, BitstreamError, BundleError, CodingError, ImageError, LicrtError, LimitError
from .limits import Limits

# Bundle and Codec pull in numpy, constriction and Pillow: imported on first
# use, so that `licrt` starts inside its own error handling (Ctrl-C included).
_LAZY = {"Bundle": ".bundle", "Codec": ".codec"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Bundle", "Codec", "BackendError", "BitstreamError", "BundleError", "CodingError", "ImageError",
           "LicrtError", "LimitError", "Limits"]
