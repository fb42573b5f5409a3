import pytest

from toykit.exercises import clear_results


@pytest.fixture(autouse=True)
def fresh_check_results():
    """Every test starts with no recorded check results (checks append to a global list)."""
    clear_results()
