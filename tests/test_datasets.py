"""Tests for fastcnn.datasets: image folders, ImageLoader and IDX files.

Every file is written by the tests themselves under ``tmp_path``; nothing is downloaded.
"""
import gzip
import pickle
import struct
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from fastcnn.datasets import ImageDataset, ImageLoader, load_idx, load_image_folder

try:
    from PIL import Image
except ImportError:  # Pillow is in the "test" extra; IDX tests still run without it
    Image = None

requires_pillow = pytest.mark.skipif(
    Image is None, reason='Pillow is not installed: pip install "fastcnn[images]"'
)


# ---------------------------------------------------------------------------------------
# Helpers


def _save(path, array, mode=None):
    """Write an (H, W) or (H, W, 3) uint8 array as an image; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(array, dtype=np.uint8))
    if mode is not None:
        image = image.convert(mode)
    image.save(path)
    return path


def _solid(height, width, value):
    return np.full((height, width, 3), value, dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    """Three classes, mixed formats, sizes and modes, plus files that must be ignored.

    Every image is a single colour, so resizing leaves its value exactly in place.
    """
    root = tmp_path / "images"
    _save(root / "cat" / "b.png", _solid(8, 8, (255, 0, 0)))
    _save(root / "cat" / "a.BMP", _solid(5, 7, (0, 255, 0)))  # upper-case extension
    _save(root / "dog" / "z.jpg", _solid(16, 16, (128, 128, 128)))  # JPEG keeps flat grey
    _save(root / "dog" / "gray.png", np.full((6, 6), 51))  # mode "L"
    _save(root / "ant" / "x.jpeg", _solid(10, 4, (0, 0, 0)))
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / ".hidden.png").write_bytes(b"ignored: hidden")
    (root / "readme.md").write_text("files in root are ignored")
    (root / "dog" / "nested").mkdir()
    _save(root / "dog" / "nested" / "deep.png", _solid(8, 8, 0))  # nested: ignored
    return root


# ---------------------------------------------------------------------------------------
# load_image_folder


@requires_pillow
def test_load_image_folder_shapes_order_and_values(folder):
    dataset = load_image_folder(folder, image_size=(12, 10))
    X, y, names = dataset  # unpacks into three values
    assert isinstance(dataset, ImageDataset)
    assert X.shape == (5, 12, 10, 3)
    assert X.dtype == np.float32
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert names == ["ant", "cat", "dog"]
    assert_array_equal(y, ["ant", "cat", "cat", "dog", "dog"])
    assert y.dtype.kind == "U"
    files = [p.replace("\\", "/").split("images/")[1] for p in dataset.filenames]
    assert files == ["ant/x.jpeg", "cat/a.BMP", "cat/b.png", "dog/gray.png", "dog/z.jpg"]
    assert_allclose(X[0], 0.0)
    assert_allclose(X[1], np.broadcast_to([0, 1, 0], (12, 10, 3)), atol=1e-6)
    assert_allclose(X[2], np.broadcast_to([1, 0, 0], (12, 10, 3)), atol=1e-6)
    assert_allclose(X[3], 51 / 255, atol=1e-6)  # grayscale source -> equal RGB channels
    assert_allclose(X[4], 128 / 255, atol=2 / 255)  # JPEG may shift a flat colour slightly
    assert "ImageDataset(n_images=5" in repr(dataset)


@requires_pillow
def test_load_image_folder_grayscale_has_one_channel(folder):
    X, y, names = load_image_folder(folder, image_size=(4, 4), color_mode="grayscale")
    assert X.shape == (5, 4, 4, 1)
    assert X.dtype == np.float32
    assert_allclose(X[3], 51 / 255, atol=1e-6)
    # Pillow's luma of pure red: 299/1000
    assert_allclose(X[2], round(255 * 0.299) / 255, atol=1 / 255)


@requires_pillow
def test_resize_is_bilinear_and_keeps_gradients(tmp_path):
    # A horizontal ramp stays monotone and spans roughly the same range after resizing.
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (16, 1))
    _save(tmp_path / "r" / "ramp" / "0.png", ramp)
    X, _, _ = load_image_folder(tmp_path / "r", image_size=(8, 8), color_mode="grayscale")
    row = X[0, 0, :, 0]
    assert np.all(np.diff(row) > 0)
    assert row[0] < 0.1 and row[-1] > 0.9
    assert_allclose(X[0, :, :, 0], np.broadcast_to(row, (8, 8)))


@requires_pillow
def test_image_size_none_keeps_native_size_and_requires_equal_sizes(tmp_path):
    root = tmp_path / "same"
    _save(root / "a" / "0.png", _solid(5, 3, 10))
    _save(root / "b" / "0.png", _solid(5, 3, 20))
    X, y, _ = load_image_folder(root)
    assert X.shape == (2, 5, 3, 3)
    _save(root / "b" / "1.png", _solid(4, 3, 20))
    with pytest.raises(ValueError, match=r"1\.png.*4x3.*5x3.*image_size"):
        load_image_folder(root)


@requires_pillow
def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    root = tmp_path / "deep"
    root.joinpath("a").mkdir(parents=True)
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(root / "a" / "0.png")
    X, _, _ = load_image_folder(root, image_size=(2, 2))
    assert_allclose(X, 32768 / 65535, atol=1e-6)
    assert X.shape == (1, 2, 2, 3)


@requires_pillow
def test_alpha_and_palette_images_are_read(tmp_path):
    root = tmp_path / "modes"
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 2] = 255
    Image.fromarray(rgba).save(_parent(root / "a" / "rgba.png"))
    Image.fromarray(_solid(4, 4, (0, 255, 0))).convert("P").save(_parent(root / "a" / "p.bmp"))
    X, _, _ = load_image_folder(root, image_size=(4, 4))
    assert_allclose(X[0], np.broadcast_to([0, 1, 0], (4, 4, 3)), atol=1e-6)  # p.bmp
    assert_allclose(X[1], np.broadcast_to([0, 0, 1], (4, 4, 3)), atol=1e-6)  # alpha dropped


def _parent(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@requires_pillow
def test_empty_class_folder_is_still_a_class(tmp_path):
    root = tmp_path / "c"
    _save(root / "b" / "0.png", _solid(2, 2, 0))
    (root / "a").mkdir()
    X, y, names = load_image_folder(root)
    assert names == ["a", "b"]
    assert_array_equal(y, ["b"])


@requires_pillow
@pytest.mark.parametrize(
    "content",
    [b"", b"this is not an image at all", "truncated_png", "gif_renamed"],
    ids=["empty", "garbage", "truncated", "wrong-format"],
)
def test_unreadable_file_raises_naming_it(folder, content):
    bad = folder / "cat" / "broken.png"
    if content == "truncated_png":
        _save(bad, np.random.default_rng(0).integers(0, 256, (32, 32, 3)))
        bad.write_bytes(bad.read_bytes()[:200])
    elif content == "gif_renamed":
        Image.fromarray(_solid(4, 4, 9)).save(bad, format="GIF")
    else:
        bad.write_bytes(content)
    with pytest.raises(ValueError, match=r"cannot read image file .*broken\.png"):
        load_image_folder(folder, image_size=(4, 4))


@requires_pillow
def test_on_error_skip_warns_and_drops_the_file(folder):
    (folder / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.warns(UserWarning, match=r"broken\.png.*skipped"):
        dataset = load_image_folder(folder, image_size=(4, 4), on_error="skip")
    X, y, _ = dataset
    assert X.shape == (5, 4, 4, 3)
    assert_array_equal(y, ["ant", "cat", "cat", "dog", "dog"])
    assert not any(name.endswith("broken.png") for name in dataset.filenames)


@requires_pillow
def test_on_error_skip_with_nothing_readable_raises(tmp_path):
    root = tmp_path / "bad"
    root.joinpath("a").mkdir(parents=True)
    (root / "a" / "0.jpg").write_bytes(b"nope")
    with pytest.warns(UserWarning, match="0.jpg"):
        with pytest.raises(ValueError, match="none of the 1 image files"):
            load_image_folder(root, image_size=(4, 4), on_error="skip")


def _root_is_file(tmp_path):
    path = tmp_path / "file.png"
    path.write_bytes(b"x")
    return path


def _root_without_class_folders(tmp_path):
    root = tmp_path / "flat"
    _save(root / "0.png", _solid(2, 2, 0))
    return root


def _root_without_images(tmp_path):
    root = tmp_path / "noimg"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.txt").write_text("text")
    (root / "a" / "y.gif").write_bytes(b"GIF89a")
    return root


@requires_pillow
@pytest.mark.parametrize(
    "make_root, kwargs, match",
    [
        (lambda t: t / "missing", {}, "does not exist"),
        (_root_is_file, {}, "is not a directory"),
        (_root_without_class_folders, {}, "no class sub-folders"),
        (_root_without_images, {}, r"no images found.*\.png"),
        (None, {"image_size": (0, 4)}, "image_size must be"),
        (None, {"image_size": (4,)}, "image_size must be"),
        (None, {"image_size": (4, 4, 3)}, "image_size must be"),
        (None, {"image_size": (4.0, 4)}, "image_size must be"),
        (None, {"image_size": (True, 4)}, "image_size must be"),
        (None, {"image_size": 28}, "image_size must be"),
        (None, {"image_size": "28x28"}, "image_size must be"),
        (None, {"color_mode": "RGB"}, "color_mode must be"),
        (None, {"color_mode": "rgba"}, "color_mode must be"),
        (None, {"on_error": "ignore"}, "on_error must be"),
        (None, {"on_error": "zeros"}, "on_error must be"),
    ],
)
def test_load_image_folder_bad_arguments(folder, tmp_path, make_root, kwargs, match):
    root = folder if make_root is None else make_root(tmp_path)
    with pytest.raises(ValueError, match=match):
        load_image_folder(root, **kwargs)


@requires_pillow
def test_numpy_integer_image_size_is_accepted(folder):
    X, _, _ = load_image_folder(folder, image_size=np.array([3, 2]))
    assert X.shape == (5, 3, 2, 3)


@requires_pillow
def test_missing_pillow_gives_install_hint(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes "from PIL import Image" fail
    with pytest.raises(ImportError, match=r'pip install "fastcnn\[images\]"'):
        load_image_folder(folder, image_size=(4, 4))


# ---------------------------------------------------------------------------------------
# ImageLoader


@requires_pillow
def test_image_loader_transform_matches_load_image_folder(folder):
    dataset = load_image_folder(folder, image_size=(6, 5), color_mode="grayscale")
    loader = ImageLoader(image_size=(6, 5), color_mode="grayscale")
    assert loader.fit(list(dataset.filenames)) is loader
    X = loader.transform(list(dataset.filenames))
    assert X.dtype == np.float32 and X.shape == (5, 6, 5, 1)
    assert_array_equal(X, dataset.data)
    # stateless: transform works without fit, on an array of str and on path objects
    X2 = ImageLoader((6, 5), "grayscale").transform(np.asarray(dataset.filenames))
    assert_array_equal(X2, dataset.data)
    paths = sorted((folder / "cat").glob("*.png"))
    assert ImageLoader((6, 5)).transform(paths).shape == (1, 6, 5, 3)


def _pipeline_data(tmp_path):
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for i in range(12):
        label = "bright" if i % 2 else "dark"
        value = rng.integers(180, 255) if label == "bright" else rng.integers(0, 60)
        paths.append(str(_save(tmp_path / f"p{i:02d}.png", np.full((6, 6), value))))
        labels.append(label)
    return paths, np.array(labels)


@requires_pillow
def test_image_loader_in_pipeline(tmp_path):
    paths, labels = _pipeline_data(tmp_path)
    model = Pipeline([
        ("load", ImageLoader((4, 4), color_mode="grayscale")),
        ("flatten", FunctionTransformer(lambda X: X.reshape(len(X), -1))),
        ("clf", LogisticRegression()),
    ])
    model.fit(paths, labels)
    assert_array_equal(model.predict(paths), labels)
    assert model.score(paths, labels) == 1.0


def test_image_loader_clone_params_and_pickle():
    loader = ImageLoader(image_size=(28, 28), color_mode="grayscale", on_error="zeros")
    copy = clone(loader)
    assert copy is not loader
    assert copy.get_params() == loader.get_params()
    assert pickle.loads(pickle.dumps(loader)).get_params() == loader.get_params()
    assert repr(ImageLoader((28, 28))) == "ImageLoader(image_size=(28, 28))"


def test_image_loader_tags():
    tags = ImageLoader((4, 4)).__sklearn_tags__()
    assert tags.requires_fit is False
    assert tags.input_tags.two_d_array is False
    assert tags.input_tags.one_d_array is True
    assert tags.input_tags.string is True
    assert tags.transformer_tags.preserves_dtype == []


@requires_pillow
def test_image_loader_on_error(tmp_path):
    good = str(_save(tmp_path / "good.png", _solid(3, 3, 255)))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image file .*bad\.jpg"):
        ImageLoader((3, 3)).transform([good, str(bad)])
    with pytest.warns(UserWarning, match=r"bad\.jpg.*all-zero"):
        X = ImageLoader((3, 3), on_error="zeros").transform([str(bad), good])
    assert X.shape == (2, 3, 3, 3)  # rows stay aligned with the input
    assert_array_equal(X[0], 0.0)
    assert_allclose(X[1], 1.0)
    with pytest.raises(ValueError, match="cannot skip files"):
        ImageLoader((3, 3), on_error="skip").transform([good])


@pytest.mark.parametrize(
    "paths, params, error, match",
    [
        ("one.png", {}, ValueError, "single path"),
        ([], {}, ValueError, "empty list"),
        ([["a.png"], ["b.png"]], {}, ValueError, r"1-D list.*shape \(2, 1\)"),
        ([1, 2], {}, ValueError, "file paths"),
        (["a.png"], {"image_size": (-1, 3)}, ValueError, "image_size must be"),
        (["a.png"], {"color_mode": "gray"}, ValueError, "color_mode must be"),
        (["a.png"], {"on_error": "ignore"}, ValueError, "on_error must be"),
    ],
)
@requires_pillow
def test_image_loader_bad_input(paths, params, error, match):
    loader = ImageLoader(**{"image_size": (3, 3), **params})
    with pytest.raises(error, match=match):
        loader.fit(paths)
    with pytest.raises(error, match=match):
        loader.transform(paths)


# ---------------------------------------------------------------------------------------
# load_idx


def _idx_bytes(array, type_code):
    """IDX encoding of ``array``: header (0, 0, type, ndim), big-endian sizes, big-endian data."""
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


IDX_CASES = [
    (np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4), 0x08),
    (np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8), 0x08),
    (np.array([-128, 0, 127], dtype=np.int8), 0x09),
    (np.array([[-30000, 2], [300, 7]], dtype=np.int16), 0x0B),
    (np.array([-(2**31), 1, 2**31 - 1, 258], dtype=np.int32), 0x0C),
    (np.array([[1.5, -2.25, 3e-8]], dtype=np.float32), 0x0D),
    (np.array([np.pi, -1e300], dtype=np.float64), 0x0E),
    (np.zeros((0, 28, 28), dtype=np.uint8), 0x08),
]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize(
    "expected, type_code", IDX_CASES, ids=[f"{a.dtype}-{a.ndim}d" for a, _ in IDX_CASES]
)
def test_load_idx_round_trip(tmp_path, expected, type_code, compress):
    data = _idx_bytes(expected, type_code)
    # The name says nothing about compression: detection is by magic bytes.
    path = tmp_path / "data-idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    array = load_idx(path)
    assert array.dtype == expected.dtype
    assert array.dtype.isnative
    assert array.shape == expected.shape
    assert_array_equal(array, expected)
    assert array.flags.writeable
    array[...] = 0  # writable without a copy


def test_load_idx_accepts_str_path_and_gz_suffix(tmp_path):
    labels = np.array([7, 2, 1, 0], dtype=np.uint8)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(labels, 0x08)))
    assert_array_equal(load_idx(str(path)), labels)


_GOOD = _idx_bytes(np.arange(12, dtype=np.int32).reshape(3, 4), 0x0C)


@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "truncated"),
        (b"\x00\x00", "truncated"),
        (b"\x01\x00\x08\x01" + _GOOD[4:], "two zero bytes"),
        (b"PK\x03\x04 a zip file", "two zero bytes"),
        (b"\x00\x00\x0a\x02" + _GOOD[4:], "unknown data type code 0x0A"),
        (b"\x00\x00\x07\x02" + _GOOD[4:], "unknown data type code 0x07"),
        (b"\x00\x00\x0f\x02" + _GOOD[4:], "unknown data type code 0x0F"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (_GOOD[:10], "truncated in its header"),
        (_GOOD[:-1], "is truncated"),
        (_GOOD[:12], "is truncated"),
        (_GOOD + b"\x00", "extra data"),
        # ndim 3 takes the first data value (0) as a size: 0 items, then 44 stray bytes
        (b"\x00\x00\x0c\x03" + _GOOD[4:], "extra data"),
        (b"\x00\x00\x0c\x01" + _GOOD[4:], "extra data"),  # ndim 1: shape (3,), too much
    ],
    ids=[
        "empty", "short-magic", "nonzero-magic", "zip", "type-0x0A", "type-0x07",
        "type-0x0F", "ndim-0", "short-header", "one-byte-short", "no-data", "one-byte-extra",
        "ndim-too-big", "ndim-too-small",
    ],
)
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_load_idx_malformed(tmp_path, content, match, compress):
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(ValueError, match=match) as info:
        load_idx(path)
    assert "bad.idx" in str(info.value)


def test_load_idx_corrupt_gzip(tmp_path):
    packed = gzip.compress(_GOOD)
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[:-10])  # stream cut short
    with pytest.raises(ValueError, match=r"cut\.gz.*corrupt or truncated"):
        load_idx(path)
    path.write_bytes(packed[:10] + b"\x00" * (len(packed) - 10))  # deflate data garbled
    with pytest.raises(ValueError, match=r"cut\.gz"):
        load_idx(path)


def test_load_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "nope.idx")


def test_module_does_not_import_pillow_at_top_level():
    # Reading IDX files must not need Pillow: it is imported only when an image is read.
    import fastcnn.datasets as datasets

    assert "Image" not in vars(datasets) and "PIL" not in vars(datasets)
