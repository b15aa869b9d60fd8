"""IDX files, the format MNIST and Fashion-MNIST are shipped in (re-exported by
:mod:`fastcnn.datasets`). Needs nothing beyond NumPy."""
import gzip
import os
import struct
import zlib

import numpy as np

__all__ = ["load_idx"]


# IDX type codes (third magic byte) and their big-endian NumPy dtypes. 0x0A is unassigned.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_READ_CHUNK = 1 << 24


def _read_exactly(stream, n_bytes):
    """Up to ``n_bytes`` from ``stream``, fewer only at end of file."""
    data = bytearray()
    while len(data) < n_bytes:
        chunk = stream.read(min(_READ_CHUNK, n_bytes - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def _parse_idx(stream, name, plain_size):
    """Read an IDX array from the decompressed byte ``stream``. ``plain_size`` is the file
    size for an uncompressed file (checked before any data is read), else None."""
    magic = _read_exactly(stream, 4)
    if len(magic) < 4:
        raise ValueError(
            f"IDX file {name!r} is truncated: {len(magic)} bytes, shorter than the 4-byte header"
        )
    if magic[0] != 0 or magic[1] != 0:
        raise ValueError(
            f"{name!r} is not an IDX file: it must start with two zero bytes, "
            f"starts with {bytes(magic[:2]).hex(' ')}"
        )
    type_code, ndim = magic[2], magic[3]
    if type_code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(
            f"IDX file {name!r} has unknown data type code 0x{type_code:02X}; "
            f"valid codes are {known}"
        )
    if ndim == 0:
        raise ValueError(f"IDX file {name!r} declares 0 dimensions; at least 1 is needed")
    dims = _read_exactly(stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(
            f"IDX file {name!r} is truncated in its header: {ndim} dimension sizes declared "
            f"({4 * ndim} bytes), {len(dims)} bytes present"
        )
    shape = struct.unpack(f">{ndim}I", bytes(dims))
    dtype = _IDX_DTYPES[type_code]
    n_items = 1
    for size in shape:
        n_items *= size
    n_bytes = n_items * dtype.itemsize
    header_bytes = 4 + 4 * ndim
    if plain_size is not None and plain_size != header_bytes + n_bytes:
        problem = "is truncated" if plain_size < header_bytes + n_bytes else "has extra data"
        raise ValueError(
            f"IDX file {name!r} {problem}: its header declares shape {shape} of {dtype.name} "
            f"({n_bytes} data bytes) but the file holds {plain_size - header_bytes}"
        )
    data = _read_exactly(stream, n_bytes + 1)  # one more byte reveals trailing data
    if len(data) != n_bytes:
        problem = "is truncated" if len(data) < n_bytes else "has extra data after the array"
        got = f"{len(data)}" if len(data) < n_bytes else "more"
        raise ValueError(
            f"IDX file {name!r} {problem}: its header declares shape {shape} of {dtype.name} "
            f"({n_bytes} data bytes), the file holds {got}"
        )
    array = np.frombuffer(data, dtype=dtype).reshape(shape)  # writable: backed by bytearray
    if not dtype.isnative:  # swap in place rather than copy: MNIST-sized files are large
        array.byteswap(inplace=True)
        array = array.view(dtype.newbyteorder())
    return array


def load_idx(path):
    """Read an IDX file, the format MNIST and Fashion-MNIST are distributed in.

    Plain and gzip-compressed files are both accepted; compression is recognised by the
    file's first bytes, not by its name. The header is validated: two zero bytes, a data
    type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64),
    the number of dimensions and their sizes, which must account for exactly the data in
    the file.

    Parameters
    ----------
    path : str or path-like
        The ``.idx`` / ``-ubyte`` file, optionally gzip-compressed (``.gz``).

    Returns
    -------
    array : ndarray
        The data in the file's shape (e.g. (60000, 28, 28) for MNIST training images,
        (60000,) for its labels) and dtype, in native byte order; writable.

    Raises
    ------
    ValueError
        If the file is malformed or truncated, has data after the array, or is a corrupt
        gzip stream; the message names the file and the problem.
    FileNotFoundError
        If ``path`` does not exist.

    Examples
    --------
    >>> from fastcnn.datasets import load_idx
    >>> images = load_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> labels = load_idx("train-labels-idx1-ubyte.gz")  # doctest: +SKIP
    >>> images.shape, images.dtype, labels.shape  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'), (60000,))
    >>> X = images[..., None].astype("float32") / 255  # (n, 28, 28, 1) for CNNClassifier
    ... # doctest: +SKIP
    """
    name = os.fspath(path)
    with open(name, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            return _parse_idx(raw, name, plain_size=os.fstat(raw.fileno()).st_size)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _parse_idx(stream, name, plain_size=None)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(
                f"gzip-compressed IDX file {name!r} is corrupt or truncated: {exc}"
            ) from exc
