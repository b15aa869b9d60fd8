"""Data augmentation: random shifts, horizontal flips and small rotations of training images.

An :class:`Augment` is a plain value, like the layer specs: it stores its settings, compares
equal to another with the same settings, pickles, and has ``get_params`` / ``set_params``, so
that :func:`sklearn.base.clone` copies it and :class:`~sklearn.model_selection.GridSearchCV`
can tune it. Passed as ``augment=`` to :class:`~fastcnn.CNNClassifier` or
:class:`~fastcnn.CNNRegressor`, it transforms every training batch afresh (so each epoch
sees different variants of the images); validation data and prediction are never augmented.
The random draws come from the estimator's ``random_state``: the same seed gives the same
augmented batches and the same fitted model.

Shifts and flips are vectorised across the batch with NumPy indexing; rotations are
resampled by :func:`scipy.ndimage.map_coordinates` (bilinear, zero fill), one call for the
whole batch.

Examples
--------
>>> from fastcnn import CNNClassifier
>>> from fastcnn.augment import Augment
>>> aug = Augment(shift=2, flip=True, rotation=10)
>>> aug
Augment(shift=2, flip=True, rotation=10)
>>> clf = CNNClassifier(augment=aug, random_state=0)
"""
import numpy as np
from scipy import ndimage, special

from .nn._spec import Spec, is_int, is_real
from .ops.geometry import pair

__all__ = ["Augment"]


class Augment(Spec):
    """Random transformations applied to each training batch.

    Every image of a batch gets its own random rotation, then its own random shift, then
    (with probability 1/2) a horizontal flip. Pixels moved in from outside the image are
    zero. Batches are augmented only while an estimator trains (``fit``, ``partial_fit``),
    never in ``predict``, ``transform`` or the early-stopping validation score.

    Parameters
    ----------
    shift : int or (int, int), default=0
        Largest shift in pixels, vertical and horizontal (one int: the same for both).
        Each image moves by whole pixels drawn uniformly from ``[-shift, shift]`` along
        each axis.
    flip : bool, default=False
        Mirror half of the images left to right (for data where that keeps the label:
        photos of objects, not digits or text).
    rotation : float, default=0.0
        Largest rotation in degrees, in [0, 180]. Each image is rotated about its centre
        by an angle drawn uniformly from ``[-rotation, rotation]``, with bilinear
        interpolation (:func:`scipy.ndimage.map_coordinates`; the same result as
        ``scipy.ndimage.rotate(image, angle, reshape=False, order=1)``).

    See Also
    --------
    fastcnn.CNNClassifier : takes an ``Augment`` as its ``augment`` parameter.

    Examples
    --------
    >>> import numpy as np
    >>> from fastcnn.augment import Augment
    >>> images = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
    >>> out = Augment(shift=1, flip=True).apply(images, random_state=0)
    >>> out.shape, out.dtype
    ((2, 4, 4, 1), dtype('float32'))
    >>> Augment(shift=1) == Augment(shift=1)
    True
    """

    def __init__(self, shift=0, flip=False, rotation=0.0):
        self.shift = shift
        self.flip = flip
        self.rotation = rotation

    # -------------------------------------------------------------- validation

    def _problem(self):
        """None if the settings are valid, else a sentence saying what is wrong."""
        shift = self.shift
        values = list(shift) if isinstance(shift, (tuple, list)) else [shift]
        if (isinstance(shift, (tuple, list)) and len(values) != 2) or not all(
                is_int(v) and v >= 0 for v in values):
            return f"shift must be an int >= 0 or a pair of them, got {shift!r}"
        if not isinstance(self.flip, (bool, np.bool_)):
            return f"flip must be True or False, got {self.flip!r}"
        if not (is_real(self.rotation) and 0 <= self.rotation <= 180):
            return f"rotation must be a number of degrees in [0, 180], got {self.rotation!r}"
        return None

    def _check(self):
        problem = self._problem()
        if problem:
            raise ValueError(f"{self!r}: {problem}")

    @property
    def is_identity(self):
        """True when these settings never change an image."""
        shift = self.shift if isinstance(self.shift, (tuple, list)) else (self.shift,)
        return not any(shift) and not self.flip and self.rotation == 0

    # -------------------------------------------------------------- the transformation

    def apply(self, images, random_state=None):
        """A randomly augmented copy of a batch of images.

        Parameters
        ----------
        images : ndarray of shape (n_images, height, width, channels)
            Channels-last images of a floating dtype; not modified.
        random_state : int, numpy.random.Generator, RandomState or None, default=None
            Where the random draws come from. The estimators pass a generator seeded from
            their own ``random_state``.

        Returns
        -------
        augmented : ndarray of the same shape and dtype as ``images``

        Examples
        --------
        >>> import numpy as np
        >>> from fastcnn.augment import Augment
        >>> image = np.zeros((1, 3, 3, 1)); image[0, 1, 1, 0] = 1.0
        >>> Augment(flip=True).apply(image, random_state=0)[0, :, :, 0]
        array([[0., 0., 0.],
               [0., 1., 0.],
               [0., 0., 0.]])
        """
        self._check()
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(
                f"images must be a 4-D batch (n_images, height, width, channels), got shape "
                f"{images.shape}"
            )
        rng = _generator(random_state)
        n = images.shape[0]
        out = images
        # Draws in a fixed order, each for the whole batch: reproducible for a given seed.
        if self.rotation:
            angles = rng.uniform(-self.rotation, self.rotation, size=n)
            out = _rotate(out, angles)
        max_dy, max_dx = pair(self.shift)
        if max_dy or max_dx:
            dy = rng.integers(-max_dy, max_dy + 1, size=n)
            dx = rng.integers(-max_dx, max_dx + 1, size=n)
            out = _shift(out, dy, dx)
        if self.flip:
            flipped = rng.random(n) < 0.5
            if out is images:
                out = images.copy()
            out[flipped] = out[flipped, :, ::-1]
        return out.copy() if out is images else out


def _generator(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    return np.random.default_rng(random_state)


def _shift(images, dy, dx):
    """Each image i moved down by dy[i] and right by dx[i] pixels, zeros filling in."""
    n, h, w, _ = images.shape
    # Shifts beyond the image only ever bring in zeros: pad no wider than the image.
    dy = np.clip(dy, -h, h)
    dx = np.clip(dx, -w, w)
    pad_y, pad_x = int(np.abs(dy).max()), int(np.abs(dx).max())
    padded = np.pad(images, ((0, 0), (pad_y, pad_y), (pad_x, pad_x), (0, 0)))
    # Output pixel (r, c) of image i reads padded pixel (r + pad - dy[i], c + pad - dx[i]).
    rows = np.arange(h)[None, :] + (pad_y - dy)[:, None]
    cols = np.arange(w)[None, :] + (pad_x - dx)[:, None]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _rotate(images, angles):
    """Each image i rotated by angles[i] degrees about its centre (bilinear, zero fill).

    scipy.ndimage.rotate's convention, in one :func:`scipy.ndimage.map_coordinates` call
    for the whole batch: the channels are stacked as (n * C) planes, and the plane
    coordinate is a whole number, where linear interpolation returns the plane itself.
    """
    n, h, w, c = images.shape
    planes = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(n * c, h, w)
    # cosdg / sindg are exact at multiples of 90 degrees, as scipy.ndimage.rotate uses.
    cos = special.cosdg(np.repeat(angles, c))[:, None, None]
    sin = special.sindg(np.repeat(angles, c))[:, None, None]
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                             indexing="ij")
    # Source = R @ target + (centre - R @ centre), computed as scipy.ndimage.rotate does:
    # in "constant" mode a point a rounding error outside the image reads zero, so the
    # same arithmetic gives the same pixels at the border.
    centre_r, centre_c = (h - 1) / 2, (w - 1) / 2
    coordinates = np.stack([
        np.broadcast_to(np.arange(n * c, dtype=np.float64)[:, None, None], (n * c, h, w)),
        cos * rows + sin * cols + (centre_r - (cos * centre_r + sin * centre_c)),
        -sin * rows + cos * cols + (centre_c - (-sin * centre_r + cos * centre_c)),
    ])
    rotated = ndimage.map_coordinates(planes, coordinates, output=images.dtype, order=1,
                                      mode="constant", cval=0.0)
    return np.ascontiguousarray(rotated.reshape(n, c, h, w).transpose(0, 2, 3, 1))
