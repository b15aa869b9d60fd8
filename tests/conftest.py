import warnings

import pytest

from fastcnn.ops.threads import parallel_grain


@pytest.fixture(autouse=True)
def _parallel_even_for_tiny_inputs():
    """Test data is small: without this, the kernels would run most of it on one thread
    (see fastcnn.ops.threads.parallel_grain) and the tests would not exercise the parallel
    code paths or their thread-count independence."""
    with parallel_grain(1):
        yield


@pytest.fixture(scope="session")
def dask_client():
    """A LocalCluster of two single-threaded worker processes on the loopback interface,
    shared by the Dask tests."""
    distributed = pytest.importorskip("dask.distributed")
    with warnings.catch_warnings():
        # The cluster warns about ports and (on small machines) memory; not our business.
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address=None, silence_logs=40)
    try:
        with distributed.Client(cluster) as client:
            yield client
    finally:
        cluster.close()
