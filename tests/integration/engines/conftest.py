import os

import pytest

from appliance.engines.sandbox import HelperPool, Limits


@pytest.fixture(scope="module")
def pool(request, work_root):
    """Sandboxed engine helpers for a test module, as workers run engines."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    pool = HelperPool(work_root / f"{name}-{os.getpid()}", Limits(timeout_seconds=30))
    yield pool
    pool.close()
