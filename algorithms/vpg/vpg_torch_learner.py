"""VPG learners: REINFORCE's loss on returns-to-go, per-module or one shared optimizer."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from algorithms.returns import discounted_cumsum, fragment_ends, standardize
from learners import ALL_MODULES, TorchLearner, masked_mean
from rlmodules import Columns
from runners.fragment import Fragment


class VPGTorchLearner(TorchLearner):
    """Policy-gradient loss ``-mean(logp(a|s) * G_t)`` with discounted returns-to-go G_t.

    Fragments are complete episodes (VPG samples whole episodes), so G_t needs no bootstrap.
    """

    def compute_extra_columns_for_module(self, module_id: str, fragments: Sequence[Fragment]
                                         ) -> dict[str, list[np.ndarray]]:
        lengths = [len(f) for f in fragments]
        rewards = np.concatenate([f.columns[Columns.REWARDS] for f in fragments])
        returns = discounted_cumsum(rewards, self.config.gamma, fragment_ends(lengths))
        if self.config.normalize_returns:
            returns = standardize(returns)
        return {Columns.RETURNS_TO_GO: np.split(returns, np.cumsum(lengths)[:-1])}

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: dict[str, Any],
                                fwd_out: dict[str, Any]) -> torch.Tensor:
        module = self.module[module_id]
        dist = module.get_train_action_dist_cls().from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        logp = dist.logp(batch[Columns.ACTIONS])
        loss = -masked_mean(logp * batch[Columns.RETURNS_TO_GO], batch.get(Columns.LOSS_MASK))
        self.log_metric(module_id, "policy_loss", loss)
        return loss


class VPGTorchLearnerSharedOptimizer(VPGTorchLearner):
    """One Adam over every parameter of the MultiRLModule (shared encoder included).

    With one optimizer per module, each policy's optimizer would step the shared encoder
    on its own; one optimizer takes a single step on the summed gradients instead.
    """

    def configure_optimizers(self) -> None:
        params = self.get_parameters(self.module)  # Trainable ones: no target nets.
        self.register_optimizer(module_id=ALL_MODULES, optimizer_name="shared_optimizer",
                                optimizer=torch.optim.Adam(params), params=params,
                                lr_or_lr_schedule=self.config.lr)
