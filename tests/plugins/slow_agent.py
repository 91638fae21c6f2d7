"""A test plugin: SAC whose every update also sleeps, so that a run's duration hardly depends on CPU load (for
the test that the local executor runs runs in parallel on a busy 2-core machine)."""

import time

from algorithms import register
from algorithms.sac import SAC

UPDATE_SLEEP_S = 0.01


@register
class SlowSAC(SAC):
    name = "slow_sac"
    description = "test only: SAC sleeping 10 ms per update"

    def update(self, batch):
        time.sleep(UPDATE_SLEEP_S)
        return super().update(batch)
