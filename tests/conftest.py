# Shared test settings. TIMEOUT bounds every blocking wait in the suite: it is only reached
# when something deadlocks, so it is generous on purpose (loky's habit).

import pytest

TIMEOUT = 60.0

IMPLS = ("python", "cython")


@pytest.fixture(params=IMPLS)
def impl(request) -> str:
    """Run the test once per kernel implementation."""
    return request.param
