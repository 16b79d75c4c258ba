"""The exceptions licrt raises on purpose.

Everything a user can cause (a bad file, a wrong bundle, an image the codec
cannot take) is a :class:`LicrtError`; the command-line tools catch it once,
print its message on one line and exit with status 1. :class:`InternalError`
is deliberately *not* a subclass: it marks a bug in licrt and keeps its
traceback.
"""


class LicrtError(Exception):
    """Base class of every error caused by input, files or configuration."""


class BundleError(LicrtError):
    """A bundle is missing, incomplete, altered or of an unknown format."""


class BitstreamError(LicrtError):
    """A compressed file is truncated, corrupted, foreign or for another bundle."""


class ImageError(LicrtError):
    """An image cannot be read, written or coded (format, mode, size)."""


class LimitError(LicrtError):
    """An input asks for more pixels or tiles than the configured limits allow."""


class CodingError(LicrtError):
    """An input cannot be coded with this bundle (its latents leave the codable range)."""


class BackendError(LicrtError):
    """A backend is unavailable or failed to load or run a stage graph."""


class ExportError(LicrtError):
    """A model cannot be exported: unknown codec, bad checkpoint, bad shape."""


class InternalError(Exception):
    """A bug in licrt: an invariant that should always hold did not."""
