"""A test plugin: SAC whose process is killed at its first update (as the kernel's OOM killer would), to check that
a run dying without a word takes no other run down with it."""

import os
import signal

from algorithms import register
from algorithms.sac import SAC


@register
class DyingSAC(SAC):
    name = "dying_sac"
    description = "test only: SAC whose process is SIGKILLed at its first update"

    def update(self, batch):
        os.kill(os.getpid(), signal.SIGKILL)
        return super().update(batch)
