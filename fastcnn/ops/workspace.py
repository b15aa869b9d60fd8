"""Arrays kept from one batch to the next.

A training or prediction loop runs the same layers on batches of the same shape over and
over. Allocating every intermediate array afresh costs more than it seems: arrays above
malloc's mmap threshold come back as new pages, and each first touch of a page is a page
fault (microseconds each under a hypervisor), which at LeNet sizes costs as much as the
arithmetic. A :class:`Workspace` hands out the same array for the same name while the
shape and dtype stay the same.

Whoever holds a workspace owns its arrays until the next call with the same name: the
network gives each layer its own, per thread and per mode (training, prediction), and
never hands one of its arrays back to a caller.
"""
import math

import numpy as np


class Workspace:
    """Named arrays reused while their shape and dtype do not change."""

    def __init__(self):
        self._arrays = {}
        self._children = {}

    def empty(self, name, shape, dtype):
        """An array of ``shape`` and ``dtype`` with whatever the last user left in it."""
        return self._get(name, shape, dtype, np.empty)

    def zeros(self, name, shape, dtype):
        """Like :meth:`empty`, but zero-filled when (re)allocated.

        For arrays whose callers write the same region every time and rely on the rest
        (zero padding) staying zero.
        """
        return self._get(name, shape, dtype, np.zeros)

    def child(self, key):
        """A workspace of its own under this one, the same for the same ``key``: for a
        plan that runs another plan several times in one call (once per group), each run
        keeping its own arrays."""
        space = self._children.get(key)
        if space is None:
            space = self._children[key] = type(self)()
        return space

    def _get(self, name, shape, dtype, allocate):
        shape, dtype = tuple(shape), np.dtype(dtype)
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = allocate(shape, dtype=dtype)
            self._arrays[name] = array
        return array


class GrowingWorkspace(Workspace):
    """A workspace whose :meth:`empty` arrays are views of the biggest one asked for yet.

    For a prediction plan: batches of any size up to the largest seen run in the same
    memory (a last, smaller batch does not reallocate, nor does the next full one). The
    arrays are C-contiguous prefixes of one buffer per name; :meth:`zeros` keeps the
    exact-shape rule, since its callers rely on the zero padding.
    """

    def empty(self, name, shape, dtype):
        shape, dtype = tuple(shape), np.dtype(dtype)
        size = math.prod(shape)
        buffer = self._arrays.get(name)
        if buffer is None or buffer.size < size or buffer.dtype != dtype:
            buffer = np.empty(size, dtype=dtype)
            self._arrays[name] = buffer
        return buffer[:size].reshape(shape)


def empty(workspace, name, shape, dtype):
    """``workspace.empty(...)``, or a fresh array when there is no workspace."""
    if workspace is None:
        return np.empty(shape, dtype=dtype)
    return workspace.empty(name, shape, dtype)


def child(workspace, key):
    """``workspace.child(key)``, or None (fresh arrays) when there is no workspace."""
    if workspace is None:
        return None
    return workspace.child(key)


def zeros(workspace, name, shape, dtype):
    """``workspace.zeros(...)``, or a fresh zero array when there is no workspace."""
    if workspace is None:
        return np.zeros(shape, dtype=dtype)
    return workspace.zeros(name, shape, dtype)
