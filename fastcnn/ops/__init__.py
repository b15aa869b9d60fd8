"""Operations on NHWC arrays: the only code that calls the compiled kernels (``_ext``).

One module per family of ops (:mod:`.conv`, :mod:`.pool`, :mod:`.activation`,
:mod:`.optim`). Every op validates its arguments before any compiled code runs; the
plans a network's layers keep (:class:`~.conv.ConvPlan`, :class:`~.pool.PoolPlan`)
check their geometry once, when they are made, and trust the arrays of every call. One
thread policy (:mod:`.threads`) and one geometry module (:mod:`.geometry`) serve them
all. :mod:`fastcnn.functional` is the public face: it re-exports the ops users call.
Nothing here imports the network or the estimators.
"""
