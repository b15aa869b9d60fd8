"""The epoch loop: mini-batches, the loss and its gradient, steps, early stopping.

The estimator validates the data and builds the network and the optimiser; this loop
trains them, recording the fitted attributes (``n_iter_``, ``loss_curve_``, ...) on the
estimator as scikit-learn's MLP does.
"""
import sys
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import gen_batches

from ..nn.losses import add_l2_gradient, l2_penalty


def run_epochs(est, X, y, sample_weight, validation, incremental, early_stopping,
               n_threads, augment_rng=None):
    network, optimizer = est.network_, est._optimizer
    params, grads = network.params, network.grads
    weights, weight_grads = network.weights, network.weight_grads
    n_samples = X.shape[0]
    total_weight = n_samples if sample_weight is None else float(sample_weight.sum())
    batch_size = min(est.batch_size, n_samples)
    n_batches = -(-n_samples // batch_size)
    alpha = float(est.alpha)
    if early_stopping:
        est._best_state = network.get_state()
    # Shuffled batches are gathered into one reused array: a fresh one per batch can
    # be fresh pages to fault in each time, as costly as a small network's arithmetic.
    gathered = np.empty((batch_size,) + X.shape[1:], dtype=X.dtype)
    for epoch in range(est.max_iter):
        start = time.perf_counter()
        order = est._random_state.permutation(n_samples) if est.shuffle else None
        accumulated_loss = 0.0
        # The weights after the last completed epoch: what a divergence or Ctrl-C
        # falls back to.
        epoch_state = network.get_state()
        stop = None
        try:
            for b, batch in enumerate(gen_batches(n_samples, batch_size)):
                if order is None:
                    rows = batch
                    X_batch = X[batch]
                else:
                    rows = order[batch]
                    X_batch = np.take(X, rows, axis=0, out=gathered[:len(rows)])
                y_batch = y[rows]
                # The batch's loss is the weighted mean over its samples, and the L2
                # term is scaled by the batch's total weight (as in MLPClassifier).
                if sample_weight is None:
                    w_batch, batch_weight = None, X_batch.shape[0]
                else:
                    w_batch = sample_weight[rows]
                    batch_weight = float(w_batch.sum())
                if augment_rng is not None:
                    X_batch = est.augment.apply(X_batch, augment_rng)
                output = network.forward(X_batch, training=True, n_threads=n_threads)
                loss, d_output = est._loss(output, y_batch, w_batch, n_threads)
                if alpha:
                    loss += l2_penalty(weights, alpha, batch_weight)
                if not np.isfinite(loss):
                    stop = (f"{type(est).__name__}: the training loss became "
                            f"{loss} in epoch {est.n_iter_ + 1}; training stopped and "
                            "the weights of the last finite epoch were kept. Lower "
                            f"learning_rate_init (now {est.learning_rate_init}) or "
                            "scale the input.")
                    break
                network.backward(d_output, n_threads=n_threads)
                if alpha:
                    add_l2_gradient(weights, weight_grads, alpha, batch_weight)
                optimizer.update(params, grads, n_threads)
                accumulated_loss += loss * batch_weight
                if est.verbose >= 2:
                    _print_progress(b + 1, n_batches)
        except KeyboardInterrupt:
            stop = (f"{type(est).__name__}: training interrupted in epoch "
                    f"{est.n_iter_ + 1}; the model keeps the weights of the last "
                    f"completed epoch ({est.n_iter_}).")
        if stop is not None:
            network.set_state(epoch_state)
            warnings.warn(stop, RuntimeWarning, stacklevel=4)
            break
        seconds = time.perf_counter() - start  # training only, not validation
        est.n_iter_ += 1
        est.t_ += n_samples
        est.loss_ = accumulated_loss / total_weight
        est.loss_curve_.append(est.loss_)
        _update_no_improvement_count(est, early_stopping, validation, n_threads)
        optimizer.iteration_ends(est.n_iter_, est.t_)
        if est.verbose:
            _print_epoch(est, seconds, n_samples, early_stopping)

        if est._no_improvement_count > est.n_iter_no_change:
            if early_stopping:
                msg = (f"Validation score did not improve more than tol={est.tol:f} "
                       f"for {est.n_iter_no_change} consecutive epochs.")
            else:
                msg = (f"Training loss did not improve more than tol={est.tol:f} for "
                       f"{est.n_iter_no_change} consecutive epochs.")
            if optimizer.trigger_stopping(msg, est.verbose):
                break
            est._no_improvement_count = 0
        if incremental:
            break
        if epoch + 1 == est.max_iter:
            warnings.warn(
                f"{type(est).__name__}: maximum iterations ({est.max_iter}) reached "
                "and the optimization hasn't converged yet; increase max_iter.",
                ConvergenceWarning,
            )
    if early_stopping:
        network.set_state(est._best_state)
        del est._best_state

def _update_no_improvement_count(est, early_stopping, validation, n_threads):
    if early_stopping:
        score = est._validation_score(*validation, n_threads)
        est.validation_scores_.append(score)
        if score < est.best_validation_score_ + est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        if score > est.best_validation_score_:
            est.best_validation_score_ = score
            est._best_state = est.network_.get_state()
    else:
        if est.loss_curve_[-1] > est.best_loss_ - est.tol:
            est._no_improvement_count += 1
        else:
            est._no_improvement_count = 0
        est.best_loss_ = min(est.best_loss_, est.loss_curve_[-1])

def _print_progress(done, total):
    width = 30
    filled = width * done // total
    bar = "=" * filled + ">" * (filled < width) + " " * (width - filled - 1)
    sys.stdout.write(f"\r  [{bar}] {done}/{total} batches")
    if done == total:
        sys.stdout.write("\r" + " " * (width + 30) + "\r")
    sys.stdout.flush()

def _print_epoch(est, seconds, n_samples, early_stopping):
    line = f"Epoch {est.n_iter_}: loss {est.loss_:.6f}"
    if early_stopping:
        line += f", validation score {est.validation_scores_[-1]:.4f}"
    rate = n_samples / seconds if seconds > 0 else float("inf")
    line += f", {seconds:.2f} s, {rate:.0f} images/s"
    print(line, flush=True)
