"""Stochastic optimisers and learning-rate schedules.

Every optimiser updates a list of parameter arrays in place from a matching list of
gradients. The learning rate follows a schedule, updated at the end of each epoch:

- ``"constant"``: ``learning_rate_init`` throughout.
- ``"invscaling"``: ``learning_rate_init / (t + 1) ** power_t``, ``t`` the number of samples
  seen so far (as in :class:`sklearn.neural_network.MLPClassifier`).
- ``"adaptive"``: constant while training keeps improving; each time it stalls for
  ``n_iter_no_change`` epochs the rate is divided by 5, and training stops once it falls
  below 1e-6 (as in MLPClassifier).
- ``"step"``: multiplied by ``lr_decay`` every ``lr_step`` epochs.

Unlike MLPClassifier, the schedule applies to every solver, Adam included.

Examples
--------
>>> import numpy as np
>>> from fastcnn.nn.optimizers import make_optimizer
>>> w = np.ones(3)
>>> opt = make_optimizer("sgd", [w], learning_rate_init=0.1, momentum=0.0)
>>> opt.update([w], [np.ones(3)])
>>> w
array([0.9, 0.9, 0.9])
"""
import numpy as np

from ..ops.optim import adam_step, sgd_step

SOLVERS = ("sgd", "adam", "rmsprop", "adagrad")
SCHEDULES = ("constant", "invscaling", "adaptive", "step")


class _Optimizer:
    def __init__(self, params, learning_rate_init=1e-3, learning_rate="constant", power_t=0.5,
                 lr_decay=0.5, lr_step=10):
        self.learning_rate_init = float(learning_rate_init)
        self.learning_rate = float(learning_rate_init)
        self.schedule = learning_rate
        self.power_t = power_t
        self.lr_decay = lr_decay
        self.lr_step = lr_step
        self.step_count = 0

    def update(self, params, grads, n_threads=1):
        """One step: every ``params[i]`` is changed in place using ``grads[i]``.

        ``n_threads`` is for the solvers with a compiled step (sgd, adam).
        """
        self.step_count += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            self._update_one(i, p, g, n_threads)

    def iteration_ends(self, epoch, samples_seen):
        """Update the learning rate after ``epoch`` epochs and ``samples_seen`` samples."""
        if self.schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (samples_seen + 1) ** self.power_t
        elif self.schedule == "step":
            self.learning_rate = self.learning_rate_init * self.lr_decay ** (epoch // self.lr_step)

    def trigger_stopping(self, msg, verbose):
        """Training stalled: True to stop, False if the adaptive schedule lowered the rate."""
        if self.schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + f" Setting learning rate to {self.learning_rate:f}")
        return False


class SGDOptimizer(_Optimizer):
    """Stochastic gradient descent with (Nesterov) momentum."""

    def __init__(self, params, momentum=0.9, nesterov=True, **schedule):
        super().__init__(params, **schedule)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.velocities = [np.zeros_like(p) for p in params]

    def _update_one(self, i, p, g, n_threads):
        # v = mu * v - lr * g; p += v, or p += mu * v - lr * g with Nesterov (Sutskever et
        # al. form, as in MLPClassifier): one compiled pass over each array
        sgd_step(p, g, self.velocities[i], self.learning_rate, self.momentum, self.nesterov,
                 n_threads)


class AdamOptimizer(_Optimizer):
    """Adam (Kingma & Ba), bias-corrected, the update MLPClassifier uses."""

    def __init__(self, params, beta_1=0.9, beta_2=0.999, epsilon=1e-8, **schedule):
        super().__init__(params, **schedule)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.ms = [np.zeros_like(p) for p in params]
        self.vs = [np.zeros_like(p) for p in params]

    def update(self, params, grads, n_threads=1):
        t = self.step_count + 1
        self._lr_t = (self.learning_rate * np.sqrt(1 - self.beta_2 ** t)
                      / (1 - self.beta_1 ** t))
        super().update(params, grads, n_threads)

    def _update_one(self, i, p, g, n_threads):
        # m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr_t m / (sqrt(v) + eps)
        adam_step(p, g, self.ms[i], self.vs[i], self._lr_t, self.beta_1, self.beta_2,
                  self.epsilon, n_threads)


class RMSpropOptimizer(_Optimizer):
    """RMSprop: steps scaled by a running root-mean-square of the gradients.

    The squared-gradient average decays with ``beta_2`` and is bias-corrected as in Adam,
    so the first steps are not inflated by its zero start.
    """

    def __init__(self, params, beta_2=0.999, epsilon=1e-8, **schedule):
        super().__init__(params, **schedule)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.vs = [np.zeros_like(p) for p in params]
        self._scratch = [np.empty_like(p) for p in params]

    def update(self, params, grads, n_threads=1):
        t = self.step_count + 1
        self._correction = 1.0 / (1 - self.beta_2 ** t)
        super().update(params, grads, n_threads)

    def _update_one(self, i, p, g, n_threads):
        dt = p.dtype.type
        v, tmp = self.vs[i], self._scratch[i]
        v *= dt(self.beta_2)
        np.multiply(g, g, out=tmp)
        tmp *= dt(1 - self.beta_2)
        v += tmp
        np.multiply(v, dt(self._correction), out=tmp)
        np.sqrt(tmp, out=tmp)
        tmp += dt(self.epsilon)
        np.divide(g, tmp, out=tmp)
        tmp *= dt(self.learning_rate)
        p -= tmp


class AdagradOptimizer(_Optimizer):
    """Adagrad: steps scaled by the root of the summed squared gradients."""

    def __init__(self, params, epsilon=1e-8, **schedule):
        super().__init__(params, **schedule)
        self.epsilon = float(epsilon)
        self.sums = [np.zeros_like(p) for p in params]
        self._scratch = [np.empty_like(p) for p in params]

    def _update_one(self, i, p, g, n_threads):
        dt = p.dtype.type
        s, tmp = self.sums[i], self._scratch[i]
        np.multiply(g, g, out=tmp)
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += dt(self.epsilon)
        np.divide(g, tmp, out=tmp)
        tmp *= dt(self.learning_rate)
        p -= tmp


def make_optimizer(solver, params, *, learning_rate_init=1e-3, learning_rate="constant",
                   power_t=0.5, lr_decay=0.5, lr_step=10, momentum=0.9,
                   nesterovs_momentum=True, beta_1=0.9, beta_2=0.999, epsilon=1e-8):
    """The optimiser named ``solver`` for ``params``, with its state allocated once."""
    schedule = dict(learning_rate_init=learning_rate_init, learning_rate=learning_rate,
                    power_t=power_t, lr_decay=lr_decay, lr_step=lr_step)
    if solver == "sgd":
        return SGDOptimizer(params, momentum=momentum, nesterov=nesterovs_momentum, **schedule)
    if solver == "adam":
        return AdamOptimizer(params, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, **schedule)
    if solver == "rmsprop":
        return RMSpropOptimizer(params, beta_2=beta_2, epsilon=epsilon, **schedule)
    if solver == "adagrad":
        return AdagradOptimizer(params, epsilon=epsilon, **schedule)
    raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
