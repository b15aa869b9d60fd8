"""Loading image data from disk: image folders, lists of image files, and IDX files.

* :func:`load_image_folder` reads the common one-folder-per-class layout into an
  ``(n, H, W, C)`` float32 array in ``[0, 1]``, the labels and the class names.
* :class:`ImageLoader` is a scikit-learn transformer that turns a list of image paths into
  the same kind of array, so a :class:`~sklearn.pipeline.Pipeline` can start from paths.
* :func:`load_idx` reads the IDX files that MNIST and Fashion-MNIST are shipped in.

Images (JPEG, PNG and BMP) are decoded with Pillow, an optional dependency installed with
``pip install "fastcnn[images]"``; it is imported only when an image is actually read.
:func:`load_idx` needs nothing beyond NumPy.
"""
from __future__ import annotations

import dataclasses
import numbers
import os
import struct
import warnings
import zlib

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ._idx import load_idx

__all__ = ["ImageDataset", "ImageLoader", "load_idx", "load_image_folder"]

#: File name extensions (compared case-insensitively) that :func:`load_image_folder` reads.
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png")

# Pillow format ids the decoder may use. Restricting them means a file is decoded as what
# its bytes say it is, and anything else (a GIF renamed .png, a text file) is rejected.
_PILLOW_FORMATS = ("JPEG", "PNG", "BMP")

# Integer grayscale modes deeper than 8 bits (16-bit PNG): Pillow's convert("L") would clip
# them to 255 instead of scaling, so they are scaled to [0, 1] by hand.
_WIDE_GRAY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")

_CHANNELS = {"rgb": 3, "grayscale": 1}
_PILLOW_MODES = {"rgb": "RGB", "grayscale": "L"}


# ---------------------------------------------------------------------------------------
# Argument checks


def _check_image_size(image_size):
    """``image_size`` as a ``(height, width)`` tuple of positive ints, or None."""
    if image_size is None:
        return None
    message = (
        "image_size must be a (height, width) pair of positive integers, e.g. (28, 28), "
        f"or None to keep the images' own size; got {image_size!r}"
    )
    if isinstance(image_size, (str, bytes)) or not hasattr(image_size, "__len__"):
        raise ValueError(message)
    if len(image_size) != 2:
        raise ValueError(message)
    for side in image_size:
        if isinstance(side, (bool, np.bool_)) or not isinstance(side, numbers.Integral):
            raise ValueError(message)
        if side < 1:
            raise ValueError(message)
    return int(image_size[0]), int(image_size[1])


def _check_color_mode(color_mode):
    if not isinstance(color_mode, str) or color_mode not in _CHANNELS:
        raise ValueError(
            f"color_mode must be 'rgb' (3 channels) or 'grayscale' (1 channel); got {color_mode!r}"
        )
    return color_mode


def _check_on_error(on_error, allowed, hint=""):
    if not isinstance(on_error, str) or on_error not in allowed:
        choices = " or ".join(repr(a) for a in allowed)
        raise ValueError(f"on_error must be {choices}; got {on_error!r}{hint}")
    return on_error


def _import_pillow():
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "Reading images needs Pillow, which is not installed; install it with "
            'pip install "fastcnn[images]"  (or: pip install pillow)'
        ) from exc
    return Image


# ---------------------------------------------------------------------------------------
# Decoding


def _read_image(Image, path):
    """Decode one image file fully; any failure is a ValueError naming the file."""
    try:
        with Image.open(path, formats=_PILLOW_FORMATS) as image:
            image.load()  # Pillow decodes lazily: force it here, where errors are caught
            if image.mode == "P" and "transparency" in image.info:
                return image.convert("RGBA")  # what Pillow asks for before dropping alpha
            return image
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error,
            Image.DecompressionBombError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ValueError(
            f"cannot read image file {os.fspath(path)!r} as a JPEG, PNG or BMP image: {reason}"
        ) from exc


def _image_to_array(Image, image, size, color_mode, out):
    """Convert ``image`` to ``color_mode``, resize it to ``size`` = (H, W) and write it,
    scaled to [0, 1], into ``out`` (an (H, W, C) float32 view)."""
    height, width = size
    resample = Image.Resampling.BILINEAR
    if image.mode in _WIDE_GRAY_MODES:
        # Pillow's "F" mode holds float32 and resizes it like any other mode.
        scaled = np.asarray(image, dtype=np.float32) / np.float32(65535)
        gray = Image.fromarray(np.ascontiguousarray(scaled))
        if gray.size != (width, height):
            gray = gray.resize((width, height), resample=resample)
        np.clip(np.asarray(gray, dtype=np.float32), 0.0, 1.0, out=out[:, :, 0])
        if out.shape[2] == 3:
            out[:, :, 1] = out[:, :, 0]
            out[:, :, 2] = out[:, :, 0]
        return
    image = image.convert(_PILLOW_MODES[color_mode])
    if image.size != (width, height):  # Pillow sizes are (width, height)
        image = image.resize((width, height), resample=resample)
    pixels = np.asarray(image, dtype=np.float32).reshape(out.shape)
    np.divide(pixels, np.float32(255), out=out)


def _load_images(paths, image_size, color_mode, on_error, stacklevel):
    """Read ``paths`` into an (n, H, W, C) float32 array.

    Returns ``(X, ok)`` with ``ok`` a boolean mask over ``paths``: False where a file could
    not be read and ``on_error`` is "skip" (its row is then absent from ``X``) or "zeros"
    (its row is all zeros).
    """
    Image = _import_pillow()
    n_channels = _CHANNELS[color_mode]
    keep_native_size = image_size is None
    ok = np.ones(len(paths), dtype=bool)
    X = None
    row = 0
    for i, path in enumerate(paths):
        try:
            image = _read_image(Image, path)
        except ValueError as exc:
            if on_error == "raise":
                raise
            action = "skipped" if on_error == "skip" else "replaced by an all-zero image"
            warnings.warn(f"{exc}; {action}", UserWarning, stacklevel=stacklevel)
            ok[i] = False
            if on_error == "skip":
                continue
            image = None
        if keep_native_size and image is not None:
            if X is None:
                image_size = (image.height, image.width)
            elif (image.height, image.width) != image_size:
                raise ValueError(
                    f"image {os.fspath(path)!r} is {image.height}x{image.width} (HxW) but "
                    f"earlier images are {image_size[0]}x{image_size[1]}; pass "
                    "image_size=(height, width) to resize all images to one size"
                )
        if X is None:
            if image_size is None:  # unreadable first file: its row's size is unknown
                raise ValueError(
                    f"image {os.fspath(path)!r} cannot be read and image_size=None leaves its "
                    "size unknown; pass image_size=(height, width)"
                )
            X = np.zeros((len(paths), *image_size, n_channels), dtype=np.float32)
        if image is not None:
            _image_to_array(Image, image, image_size, color_mode, X[row])
        row += 1
    if X is None:
        X = np.zeros((0, *(image_size or (0, 0)), n_channels), dtype=np.float32)
    return X[:row], ok


# ---------------------------------------------------------------------------------------
# Image folders


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ImageDataset:
    """Images loaded by :func:`load_image_folder`, with their labels and file names.

    Attributes are named like scikit-learn's dataset Bunches. Iterating yields
    ``(data, target, target_names)``, so the result unpacks into three values.

    Attributes
    ----------
    data : ndarray of shape (n_images, height, width, channels), dtype float32
        Pixel values in [0, 1], channels last (3 for "rgb", 1 for "grayscale").
    target : ndarray of shape (n_images,), dtype str
        The class name (folder name) of each image.
    target_names : list of str
        The class names, sorted; every class folder is listed, even one with no images.
    filenames : ndarray of shape (n_images,), dtype str
        The path of each image, in the order of ``data``.

    Examples
    --------
    >>> from fastcnn.datasets import load_image_folder
    >>> X, y, names = load_image_folder("photos", image_size=(32, 32))  # doctest: +SKIP
    >>> dataset = load_image_folder("photos", image_size=(32, 32))  # doctest: +SKIP
    >>> dataset.filenames[0]  # doctest: +SKIP
    'photos/cat/001.jpg'
    """

    data: np.ndarray
    target: np.ndarray
    target_names: list
    filenames: np.ndarray

    def __iter__(self):
        return iter((self.data, self.target, self.target_names))

    def __repr__(self):
        return (
            f"ImageDataset(n_images={self.data.shape[0]}, image_shape={self.data.shape[1:]}, "
            f"target_names={self.target_names!r})"
        )


def _list_image_folder(root):
    """Sorted class names and ``(path, class index)`` pairs of the images under ``root``."""
    root_str = os.fspath(root)
    if not os.path.exists(root_str):
        raise ValueError(
            f"image folder {root_str!r} does not exist; pass the folder that holds one "
            "sub-folder per class"
        )
    if not os.path.isdir(root_str):
        raise ValueError(
            f"{root_str!r} is not a directory; pass the folder that holds one sub-folder "
            "per class (root/cat/001.jpg, root/dog/002.png, ...)"
        )
    with os.scandir(root_str) as entries:
        class_names = sorted(
            e.name for e in entries if e.is_dir() and not e.name.startswith(".")
        )
    if not class_names:
        raise ValueError(
            f"image folder {root_str!r} has no class sub-folders; put the images of each "
            "class in a sub-folder named after the class (root/cat/001.jpg, root/dog/002.png)"
        )
    files = []
    for label, name in enumerate(class_names):
        with os.scandir(os.path.join(root_str, name)) as entries:
            names = sorted(
                e.name for e in entries
                if e.is_file() and not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
            )
        files.extend((os.path.join(root_str, name, f), label) for f in names)
    if not files:
        extensions = ", ".join(IMAGE_EXTENSIONS)
        raise ValueError(
            f"no images found in the class folders of {root_str!r} "
            f"({', '.join(class_names)}); only files ending in {extensions} "
            "(any case) are read"
        )
    return class_names, files


def load_image_folder(root, image_size=None, color_mode="rgb", on_error="raise"):
    """Load a folder of images arranged one sub-folder per class.

    ``root/cat/001.jpg``, ``root/cat/002.png``, ``root/dog/001.bmp``, ... gives two classes,
    "cat" and "dog". Files ending in ``.jpg``, ``.jpeg``, ``.png`` or ``.bmp`` (any case)
    directly inside a class folder are read; other files, nested folders, hidden entries
    (names starting with ".") and files directly in ``root`` are ignored. Images are ordered
    by class name, then by file name (Python string order), so the result is the same on
    every machine.

    Parameters
    ----------
    root : str or path-like
        The folder holding one sub-folder per class.
    image_size : (int, int) or None, default=None
        ``(height, width)`` every image is resized to, with Pillow's antialiased bilinear
        filter (``PIL.Image.Resampling.BILINEAR``); images already that size are not
        resampled. None keeps the images' own size, which must then be the same for all.
    color_mode : {"rgb", "grayscale"}, default="rgb"
        "rgb" gives 3 channels, "grayscale" 1 (Pillow's ITU-R 601-2 luma). Alpha channels
        are dropped (not composited); 16-bit grayscale PNGs are scaled by 1/65535.
    on_error : {"raise", "skip"}, default="raise"
        What to do with a file that cannot be decoded (corrupt, truncated, not really a
        JPEG/PNG/BMP, unreadable): "raise" a ValueError naming it, or "skip" it with a
        UserWarning naming it.

    Returns
    -------
    dataset : ImageDataset
        ``dataset.data`` (n, H, W, C) float32 in [0, 1], ``dataset.target`` (n,) class
        names, ``dataset.target_names`` the sorted class names and ``dataset.filenames``
        the paths read. It unpacks as ``X, y, class_names = load_image_folder(...)``.

    Raises
    ------
    ImportError
        If Pillow is not installed (``pip install "fastcnn[images]"``).
    ValueError
        If ``root`` is missing or not a directory, has no class folders or no images, an
        argument is invalid, image sizes differ with ``image_size=None``, or a file cannot
        be read and ``on_error="raise"``.

    See Also
    --------
    ImageLoader : the same decoding as a transformer on lists of paths.

    Examples
    --------
    >>> from fastcnn.datasets import load_image_folder
    >>> X, y, class_names = load_image_folder(
    ...     "flowers", image_size=(64, 64), color_mode="rgb")  # doctest: +SKIP
    >>> X.shape, X.dtype, class_names  # doctest: +SKIP
    ((120, 64, 64, 3), dtype('float32'), ['daisy', 'rose', 'tulip'])
    """
    image_size = _check_image_size(image_size)
    color_mode = _check_color_mode(color_mode)
    on_error = _check_on_error(on_error, ("raise", "skip"))
    class_names, files = _list_image_folder(root)
    paths = [path for path, _ in files]
    X, ok = _load_images(paths, image_size, color_mode, on_error, stacklevel=3)
    if X.shape[0] == 0:
        raise ValueError(
            f"none of the {len(paths)} image files under {os.fspath(root)!r} could be read "
            "(each was skipped with a warning)"
        )
    labels = np.array([label for _, label in files], dtype=np.intp)[ok]
    return ImageDataset(
        data=X,
        target=np.asarray(class_names, dtype=str)[labels],
        target_names=list(class_names),
        filenames=np.asarray(paths, dtype=str)[ok],
    )


# ---------------------------------------------------------------------------------------
# Transformer


class ImageLoader(TransformerMixin, BaseEstimator):
    """Transformer reading image files: a 1-D list of paths in, an image array out.

    Stateless: ``fit`` learns nothing and ``transform`` works without it, so a
    :class:`~sklearn.pipeline.Pipeline` can take file paths as its ``X``. Decoding is the
    same as in :func:`load_image_folder` (JPEG, PNG or BMP through Pillow, judged by the
    file's content, whatever its extension).

    Parameters
    ----------
    image_size : (int, int) or None, default=None
        ``(height, width)`` every image is resized to with Pillow's antialiased bilinear
        filter. None keeps the images' own size, which must then be the same for all.
    color_mode : {"rgb", "grayscale"}, default="rgb"
        3 channels or 1 channel.
    on_error : {"raise", "zeros"}, default="raise"
        What to do with a file that cannot be decoded: "raise" a ValueError naming it, or
        warn (naming it) and return an all-zero image in its row. There is no "skip": a
        transformer must return one row per input so that rows stay aligned with ``y``;
        use :func:`load_image_folder` with ``on_error="skip"`` to drop unreadable files.

    Examples
    --------
    >>> from sklearn.pipeline import make_pipeline
    >>> from fastcnn import CNNClassifier
    >>> from fastcnn.datasets import ImageLoader
    >>> model = make_pipeline(
    ...     ImageLoader(image_size=(28, 28), color_mode="grayscale"),
    ...     CNNClassifier(max_iter=5))  # doctest: +SKIP
    >>> model.fit(["cat/1.png", "dog/2.png"], ["cat", "dog"])  # doctest: +SKIP
    >>> ImageLoader((28, 28)).transform(["img/0.png", "img/1.jpg"]).shape  # doctest: +SKIP
    (2, 28, 28, 3)
    """

    def __init__(self, image_size=None, color_mode="rgb", on_error="raise"):
        self.image_size = image_size
        self.color_mode = color_mode
        self.on_error = on_error

    def _checked_params(self):
        image_size = _check_image_size(self.image_size)
        color_mode = _check_color_mode(self.color_mode)
        on_error = _check_on_error(
            self.on_error, ("raise", "zeros"),
            hint=(
                "; a transformer must return one row per path, so it cannot skip files "
                "(use load_image_folder(..., on_error='skip') to drop them)"
                if self.on_error == "skip" else ""
            ),
        )
        return image_size, color_mode, on_error

    @staticmethod
    def _check_paths(X):
        if isinstance(X, (str, bytes, os.PathLike)):
            raise ValueError(
                "ImageLoader expects a 1-D list or array of file paths, got a single path; "
                "wrap it in a list: [path]"
            )
        if np.ndim(X) != 1:
            raise ValueError(
                "ImageLoader expects a 1-D list or array of file paths, got "
                f"{type(X).__name__} of shape {np.shape(X)}; for one column of a 2-D array "
                "pass X[:, 0]"
            )
        paths = list(X)
        if not paths:
            raise ValueError("ImageLoader got an empty list of paths; pass at least one path")
        for path in paths:
            if not isinstance(path, (str, os.PathLike)):
                raise ValueError(
                    "ImageLoader expects file paths (str or os.PathLike), got an element of "
                    f"type {type(path).__name__}: {path!r}"
                )
        return paths

    def fit(self, X, y=None):
        """Check the parameters and the paths; nothing is learned.

        Parameters
        ----------
        X : array-like of shape (n_paths,)
            Image file paths (str or path-like). Not read.
        y : None
            Ignored.

        Returns
        -------
        self : ImageLoader
            This loader.

        Examples
        --------
        >>> from fastcnn.datasets import ImageLoader
        >>> ImageLoader((28, 28)).fit(["img/0.png"])
        ImageLoader(image_size=(28, 28))
        """
        self._checked_params()
        self._check_paths(X)
        return self

    def transform(self, X):
        """Read the images at the paths in ``X``.

        Parameters
        ----------
        X : array-like of shape (n_paths,)
            Image file paths (str or path-like).

        Returns
        -------
        images : ndarray of shape (n_paths, height, width, channels), dtype float32
            Pixel values in [0, 1], one row per path in the order given.

        Examples
        --------
        >>> from fastcnn.datasets import ImageLoader
        >>> loader = ImageLoader((28, 28), color_mode="grayscale")
        >>> loader.transform(["img/0.png", "img/1.bmp"]).shape  # doctest: +SKIP
        (2, 28, 28, 1)
        """
        image_size, color_mode, on_error = self._checked_params()
        paths = self._check_paths(X)
        images, _ = _load_images(paths, image_size, color_mode, on_error, stacklevel=3)
        return images

    def __sklearn_is_fitted__(self):
        return True  # stateless: usable without fit

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.one_d_array = True
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        # Output is float32 images whatever the input: no numeric dtype is "preserved".
        tags.transformer_tags.preserves_dtype = []
        return tags
