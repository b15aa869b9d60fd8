import pytest

from fastcnn import _checks


@pytest.fixture(autouse=True)
def _parallel_even_for_tiny_inputs(monkeypatch):
    """Test data is small: without this, the kernels would run most of it on one thread
    (see fastcnn._checks.PARALLEL_GRAIN) and the tests would not exercise the parallel
    code paths or their thread-count independence."""
    monkeypatch.setattr(_checks, "PARALLEL_GRAIN", 1)
