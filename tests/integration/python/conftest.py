# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fixtures shared by the integration tests in Python."""

import pytest


@pytest.fixture(autouse=True)
def keeper_cache(monkeypatch, tmp_path):
    """Each test its own keeper lock and journal directory (``run_lock`` of spot_pool and spot_pools).

    The tests reset moto between them; a journal kept across a reset would make a keeper run plan
    the instances of an earlier test as launched but not yet visible. The playbooks and modules the
    tests start inherit this environment.
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
