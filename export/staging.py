"""Writing a bundle directory all at once: assembled beside its target, renamed into place when complete.

Needs neither torch nor onnx: export and calibration write bundles with it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from licrt.runtime.bundle import sha256_file
from licrt.runtime.errors import ExportError


def check_target(out: Path, force: bool) -> None:
    """Raise ExportError if out exists and force is not set (check it before long work)."""
    if Path(out).exists() and not force:
        raise ExportError(f"{out} already exists; choose another --out or pass --force")


@contextlib.contextmanager
def staged_directory(out: Path, force: bool = False) -> Iterator[Path]:
    """A fresh directory beside out to write into; it replaces out when the block ends without an error and
    is removed when it raises, so a failed or interrupted write never leaves a half-written bundle.

    Raises:
        ExportError: out exists and force is not set (checked before anything is written).
    """
    out = Path(out)
    check_target(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield staging
        staging.chmod(0o755)  # mkdtemp makes it private
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def digest_files(root: Path) -> dict[str, str]:
    """The sha256 of every file under root, by its path relative to root: the manifest's ``files``."""
    return {path.relative_to(root).as_posix(): sha256_file(path) for path in sorted(root.rglob("*")) if path.is_file()}
