"""A Dask cluster shared by the batch and chunked tests (starting one takes seconds)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def dask_scheduler():
    """The address of a LocalCluster of two worker processes, one thread each."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        yield cluster.scheduler_address
