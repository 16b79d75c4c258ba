"""Opening a bundle directory: manifest, integrity check, entropy tables."""

from __future__ import annotations

import copy
import hashlib
import os
import stat
from pathlib import Path, PurePosixPath

from .entropy import ScaleTable, load_tables
from .errors import BundleError
from .manifest import MAX_MANIFEST_BYTES, Manifest

MANIFEST = "manifest.json"
#: The bundle shipped inside the package, used when no bundle is named.
DEFAULT_BUNDLE = Path(__file__).parent / "default_bundle"
#: The most bytes a bundle's files may hold together (all of them are hashed on opening).
MAX_BUNDLE_BYTES = 2**34


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_inside(root: Path, relative: str) -> Path:
    """The real path of a file a manifest names; it must lie inside root once symlinks are resolved.

    Raises:
        BundleError: the name is absolute, climbs out with ``..``, or leads
            outside through a symlink.
    """
    real_root = root.resolve()
    resolved = real_root.joinpath(*PurePosixPath(relative).parts).resolve()
    if not resolved.is_relative_to(real_root):
        raise BundleError(f"bundle {root}: {relative} leads outside the bundle (to {resolved})")
    return resolved


def _regular_file(root: Path, relative: str) -> tuple[Path, int] | None:
    """Real path and size of a regular file inside the bundle, None if absent; anything else is refused unopened."""
    path = resolve_inside(root, relative)
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BundleError(f"bundle {root}: cannot read {relative} ({exc.strerror})") from None
    if not stat.S_ISREG(status.st_mode):
        raise BundleError(f"bundle {root}: {relative} is not a regular file")
    return path, status.st_size


def _read_manifest(root: Path) -> tuple[Manifest, bytes]:
    """The validated manifest and its fingerprint."""
    found = _regular_file(root, MANIFEST)
    if found is None:
        raise BundleError(f"{root} is not a licrt bundle (no {MANIFEST})")
    path, size = found
    if size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES:,} bytes")
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    return Manifest.loads(text), hashlib.sha256(raw).digest()[:8]


def _verify_files(root: Path, manifest: Manifest) -> None:
    """Check every listed file: inside the bundle, regular, within the size bound, matching its sha256."""
    files = {}
    for relative in manifest.files:
        found = _regular_file(root, relative)
        if found is None:
            raise BundleError(f"bundle {root} is incomplete: {relative} is missing")
        files[relative] = found
    total = sum(size for _, size in files.values())
    if total > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle {root} holds {total:,} bytes, more than {MAX_BUNDLE_BYTES:,}")
    for relative, (file, _) in files.items():
        if sha256_file(file) != manifest.files[relative]:
            raise BundleError(f"bundle {root} is damaged: {relative} does not match its sha256 in the manifest")


class Bundle:
    """A bundle on disk, checked against its manifest, at one of its quality levels, with that level's entropy
    tables loaded.

    Example:
        >>> bundle = Bundle.open("bundles/s2c")            # doctest: +SKIP
        >>> bundle.manifest.codec, bundle.bucket_shapes     # doctest: +SKIP
        ('s2c-hybrid-s', [(256, 256)])
        >>> bundle.at_level(0).level_name                   # doctest: +SKIP
        'q1'
    """

    def __init__(self, root: Path, manifest: Manifest, fingerprint: bytes):
        self.root = root
        self.manifest = manifest
        #: 8 bytes of the sha256 of manifest.json, which lists the sha256 of
        #: every other file: any change to the bundle changes it.
        self.fingerprint = fingerprint
        #: What a file needs of the bundle that decodes it (:meth:`Manifest.coding_contract`): bundles
        #: that differ only in their free stages, e.g. calibrated to INT8, share it.
        self.contract = manifest.coding_contract()
        self.y_tables, scale_table = load_tables(self.path(manifest.y_tables))
        if scale_table is None:
            raise BundleError(f"{manifest.y_tables} has no scale table")
        self.scale_table: ScaleTable = scale_table
        self._set_level(manifest.default_level)
        # This object at each level loaded so far, shared by all of them: a level's tables are read once.
        self._levels: dict[int, Bundle] = {self.level: self}

    def _set_level(self, level: int) -> None:
        """Use the weights and ẑ tables of a level (an index into ``manifest.levels``)."""
        manifest = self.manifest
        if not 0 <= level < len(manifest.levels):
            raise BundleError(f"bundle {self.root} has quality levels 1 to {len(manifest.levels)}, not {level + 1}")
        #: Index of the quality level whose weights and tables this object uses.
        self.level = level
        level_files = manifest.levels[level]
        self.z_tables, _ = load_tables(self.path(level_files.z_tables))
        for bucket in manifest.buckets:
            channels = bucket.stages["h_s"].input("z_hat").shape[1]
            if channels != len(self.z_tables):
                raise BundleError(f"{level_files.z_tables} has {len(self.z_tables)} rows, one per channel of "
                                  f"z_hat, which has {channels} (bucket {bucket.name})")

    def at_level(self, level: int) -> Bundle:
        """The same bundle at another quality level (an index into ``manifest.levels``); the ŷ tables and
        everything but the level's own files are shared.

        Raises:
            BundleError: the bundle has no such level, or its tables are malformed.
        """
        if level not in self._levels:
            view = copy.copy(self)
            view._set_level(level)
            self._levels[level] = view
        return self._levels[level]

    @property
    def level_name(self) -> str:
        return self.manifest.levels[self.level].name

    @property
    def key(self) -> bytes:
        """Identifies the weights this object runs with: the fingerprint and the level (for backends' caches)."""
        return self.fingerprint + bytes([self.level])

    @property
    def weights_folder(self) -> Path:
        """The real folder of this level, where the stage graphs find the weights files they name."""
        return self.path(self.manifest.levels[self.level].directory)

    @property
    def weight_files(self) -> dict[str, Path]:
        """This level's weights files: the real path by the name the graphs give it."""
        level = self.manifest.levels[self.level]
        return {PurePosixPath(relative).name: self.path(relative) for relative in level.weights}

    @classmethod
    def open(cls, path: str | Path) -> Bundle:
        """Read and verify a bundle; nothing outside its directory is opened.

        Raises:
            BundleError: the directory or its manifest is missing or invalid
                (the message names the field), a listed file is missing, leads
                outside the bundle or is not a regular file, the files are too
                large, a file's sha256 differs from the manifest's (the bundle
                was altered or copied incompletely), or the entropy tables are
                malformed.
        """
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"bundle {root} does not exist or is not a directory")
        manifest, fingerprint = _read_manifest(root)
        _verify_files(root, manifest)
        return cls(root, manifest, fingerprint)

    def path(self, relative: str) -> Path:
        """Real path of a file named in the manifest (never outside the bundle)."""
        return resolve_inside(self.root, relative)

    @property
    def bucket_shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple((b.height, b.width) for b in self.manifest.buckets)
