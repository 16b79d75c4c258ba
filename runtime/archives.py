"""Zip archives that may be hostile (entropy tables, checkpoints): bounded before anything is inflated.

A zip archive's central directory states every member's uncompressed size,
and Python's :mod:`zipfile` never inflates a member beyond that size (it
stops there and checks the member's CRC-32). Summing the directory's sizes
before reading therefore bounds the memory and time an archive can cost,
however hostile: a small file that would inflate to gigabytes is refused
unread.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import LicrtError

#: What reading a damaged or hostile archive raises: a bad structure, a corrupt
#: deflate stream, a failed CRC, an encrypted or unknown compression method.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, RuntimeError, NotImplementedError)


def open_zip(path: Path, max_bytes: int, error: type[LicrtError]) -> zipfile.ZipFile:
    """Open a zip archive whose members inflate to at most max_bytes together.

    Raises:
        error: the file is not a zip archive, or it is over the bound.
    """
    try:
        archive = zipfile.ZipFile(path)
    except ZIP_ERRORS as exc:
        raise error(f"{path.name} is not a readable zip archive ({exc})") from None
    inflated = sum(member.file_size for member in archive.infolist())
    if inflated > max_bytes:
        archive.close()
        raise error(f"{path.name} inflates to {inflated:,} bytes, more than the {max_bytes:,} allowed")
    return archive


def read_npz(path: Path, names: tuple[str, ...], optional: tuple[str, ...], max_bytes: int,
             error: type[LicrtError]) -> dict[str, np.ndarray]:
    """Read numeric arrays from an ``.npz`` file without trusting it.

    Each array's header is checked before its data is read: a plain numeric
    dtype (no objects, so nothing is unpickled) and a shape whose size fits
    the member. No other members may be present.

    Raises:
        error: naming the file and what is wrong with it.
    """
    with open_zip(path, max_bytes, error) as archive:
        members = set(archive.namelist())
        required, allowed = {f"{name}.npy" for name in names}, {f"{name}.npy" for name in names + optional}
        if not required <= members <= allowed:
            raise error(f"{path.name} must hold the arrays {', '.join(sorted(required))} and may hold "
                        f"{', '.join(sorted(allowed - required)) or 'nothing else'}; it holds "
                        f"{', '.join(sorted(members)[:8])}")
        try:
            return {member.removesuffix(".npy"): _read_npy(archive, member, f"{path.name}: {member}", error)
                    for member in sorted(members)}
        except ZIP_ERRORS as exc:
            raise error(f"{path.name} is damaged ({exc})") from None


def _read_npy(archive: zipfile.ZipFile, member: str, where: str, error: type[LicrtError]) -> np.ndarray:
    info = archive.getinfo(member)
    with archive.open(info) as file:
        version = np.lib.format.read_magic(file)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
        else:
            raise error(f"{where}: .npy format {version} is not supported")
        if dtype.kind not in "fiu" or dtype.fields is not None:
            raise error(f"{where}: arrays of {dtype} are not allowed (numbers only)")
        count = math.prod(shape)
        if count * dtype.itemsize > info.file_size:
            raise error(f"{where}: its header claims a {shape} array, more than the member holds")
        data = file.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise error(f"{where} is truncated")
        return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
