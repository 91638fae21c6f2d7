"""A test plugin: SAC whose critic loss turns NaN, to check that the harness records a failed run."""

from algorithms import register
from algorithms.sac import SAC


@register
class NanSAC(SAC):
    name = "nan_sac"
    description = "test only: SAC reporting a NaN critic loss"

    def update(self, batch):
        metrics = super().update(batch)
        metrics["loss/critic"] = metrics["loss/critic"] * float("nan")
        return metrics
