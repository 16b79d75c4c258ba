"""Opening a bundle directory: manifest, integrity check, entropy tables."""

from __future__ import annotations

import hashlib
from functools import cached_property
from pathlib import Path, PurePosixPath

from .entropy import CategoricalTables, ScaleTable, load_tables
from .errors import BundleError
from .manifest import Manifest

MANIFEST = "manifest.json"
#: The bundle shipped inside the package, used when no bundle is named.
DEFAULT_BUNDLE = Path(__file__).parent / "default_bundle"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Bundle:
    """A bundle on disk, checked against its manifest.

    Example:
        >>> bundle = Bundle.open("bundles/s2c")            # doctest: +SKIP
        >>> bundle.manifest.codec, bundle.bucket_shapes     # doctest: +SKIP
        ('s2c-hybrid-s', [(256, 256)])
    """

    def __init__(self, root: Path, manifest: Manifest, fingerprint: bytes):
        self.root = root
        self.manifest = manifest
        #: 8 bytes of the sha256 of manifest.json, which lists the sha256 of
        #: every other file: any change to the bundle changes it.
        self.fingerprint = fingerprint

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        """Read and verify a bundle.

        Raises:
            BundleError: the directory or its manifest is missing or invalid, a
                listed file is missing, or a file's sha256 differs from the
                manifest's (the bundle was altered or copied incompletely).
        """
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"bundle {root} does not exist or is not a directory")
        manifest_path = root / MANIFEST
        try:
            raw = manifest_path.read_bytes()
            text = raw.decode("utf-8")
        except FileNotFoundError:
            raise BundleError(f"{root} is not a licrt bundle (no {MANIFEST})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise BundleError(f"cannot read {manifest_path}: {exc}") from None
        manifest = Manifest.loads(text)
        bundle = cls(root, manifest, hashlib.sha256(raw).digest()[:8])
        for relative, expected in manifest.files.items():
            file = bundle.path(relative)
            if not file.is_file():
                raise BundleError(f"bundle {root} is incomplete: {relative} is missing")
            if sha256_file(file) != expected:
                raise BundleError(
                    f"bundle {root} is damaged: {relative} does not match its sha256 "
                    "in the manifest"
                )
        return bundle

    def path(self, relative: str) -> Path:
        """Absolute path of a file named in the manifest (never outside the bundle)."""
        parts = PurePosixPath(relative)
        if parts.is_absolute() or ".." in parts.parts:
            raise BundleError(f"manifest.json names a file outside the bundle: {relative}")
        return self.root.joinpath(*parts.parts)

    @property
    def bucket_shapes(self) -> list[tuple[int, int]]:
        return [(b.height, b.width) for b in self.manifest.buckets]

    @cached_property
    def z_tables(self) -> CategoricalTables:
        tables, _ = load_tables(self.path(self.manifest.z_tables))
        return tables

    @cached_property
    def _y(self) -> tuple[CategoricalTables, ScaleTable]:
        tables, scale_table = load_tables(self.path(self.manifest.y_tables))
        if scale_table is None:
            raise BundleError(f"{self.manifest.y_tables} has no scale table")
        return tables, scale_table

    @property
    def y_tables(self) -> CategoricalTables:
        return self._y[0]

    @property
    def scale_table(self) -> ScaleTable:
        return self._y[1]
