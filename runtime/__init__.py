"""licrt runtime: read a bundle, run its stage graphs, code pixels to bytes and back.

The runtime never imports torch.

Example:
    >>> from licrt.runtime import Codec
    >>> codec = Codec.open("bundle")                  # doctest: +SKIP
    >>> image = codec.decompress(codec.compress("photo.png"))   # doctest: +SKIP
"""

from .bundle import Bundle
from .codec import Codec
from .errors import BackendError, BitstreamError, BundleError, CodingError, ImageError, LicrtError

__all__ = ["Bundle", "Codec", "BackendError", "BitstreamError", "BundleError", "CodingError", "ImageError",
           "LicrtError"]
