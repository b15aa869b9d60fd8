"""The hidden layers ``layers=None`` builds."""
from ..layers import Conv2D, Dense, Dropout, MaxPool2D


def default_layers(image_shape):
    """The hidden layers ``layers=None`` builds for one image of shape (H, W, C).

    Images of at least 6x6 get up to three blocks of two 3x3 'same' convolutions, 2x2 max
    pooling and dropout (40 filters, doubling per block up to 128), each halving the image
    while it is at least 6 pixels high and wide, then a dense layer of 128 with dropout. On
    the 8x8 digits that is one block: about 0.99 accuracy in a few seconds. Smaller inputs
    (scikit-learn's conformance data, 1 x F strips of tabular features) get one small
    convolution and a small dense layer, so that they train in milliseconds.

    Examples
    --------
    >>> default_layers((8, 8, 1))
    [Conv2D(filters=40, kernel_size=3, padding='same'), Conv2D(filters=40, kernel_size=3, padding='same'), MaxPool2D(), Dropout(rate=0.25), Dense(units=128), Dropout(rate=0.5)]
    >>> default_layers((1, 4, 1))
    [Conv2D(filters=16, kernel_size=3, padding='same'), Dense(units=32)]
    """
    h, w, _ = image_shape
    side = min(h, w)
    if side < 6:
        return [Conv2D(16, 3, padding="same"), Dense(32)]
    layers = []
    filters = 40
    for _ in range(3):
        if side < 6:
            break
        layers += [Conv2D(filters, 3, padding="same"), Conv2D(filters, 3, padding="same"),
                   MaxPool2D(2), Dropout(0.25)]
        side //= 2
        filters = min(2 * filters, 128)
    return layers + [Dense(128), Dropout(0.5)]
