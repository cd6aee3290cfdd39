"""APPOTorchLearner: V-trace (or GAE) columns and APPO's clipped surrogate against a target
network (IMPACT, Luo et al. 2020), on batches sampled with older weights."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from algorithms.appo.vtrace import vtrace
from algorithms.ppo.gae import compute_gae
from algorithms.ppo.ppo_torch_learner import PPOTorchLearner
from learners import masked_mean
from learners.batching import cut_sequences
from rlmodules import Columns, SelfSupervisedLossAPI, TargetNetworkAPI, ValueFunctionAPI
from rlmodules.apis import TARGET_NETWORK_ACTION_DIST_INPUTS
from rlmodules.tree import map_tree
from runners.fragment import Fragment


_IS_WEIGHTS = "target_is_weights"
"""Column: behaviour / target policy probability of each action, clipped at
``target_worker_clipping`` (the surrogate's importance weight)."""


class APPOTorchLearner(PPOTorchLearner):
    """Trains modules with a value function and target networks (the target's policy is
    the "old" policy of the surrogate). From PPOTorchLearner it keeps the entropy schedule
    and the KL coefficient adapted towards ``kl_target`` after every update."""

    @classmethod
    def rl_module_required_apis(cls) -> list[type]:
        return [ValueFunctionAPI, TargetNetworkAPI]

    def compute_extra_columns_for_module(self, module_id: str, fragments: Sequence[Fragment]
                                         ) -> dict[str, list[np.ndarray]]:
        """Once per update, with no gradient: the surrogate's importance weights (behaviour /
        target policy, clipped), ADVANTAGES and VALUE_TARGETS from V-trace (the target policy
        corrects for the behaviour policy that sampled) or, with ``vtrace=False``, from GAE,
        and with ``use_kl_loss`` the target policy's action distribution inputs."""
        if isinstance(self.module[module_id], SelfSupervisedLossAPI):
            return {}
        config = self.config
        lengths = [len(f) for f in fragments]
        splits = np.cumsum(lengths)[:-1]
        target_inputs = self._target_action_dist_inputs(module_id, fragments)
        values = self.compute_values_for_fragments(module_id, fragments)
        module = self.module[module_id]
        actions = map_tree(lambda *xs: np.concatenate(xs),
                           *[f.columns[Columns.ACTIONS] for f in fragments])
        with torch.no_grad():
            target_logp = module.get_train_action_dist_cls().from_logits(
                torch.from_numpy(target_inputs)).logp(map_tree(torch.from_numpy, actions)).numpy()
        behaviour_logp = np.concatenate([f.columns[Columns.ACTION_LOGP] for f in fragments])
        # behaviour / target, clipped: the same for every epoch, so computed once here.
        is_weights = np.minimum(np.exp(behaviour_logp - target_logp),
                                config.target_worker_clipping).astype(np.float32)
        if config.vtrace:
            ends = np.zeros(len(target_logp), bool)
            ends[np.cumsum(lengths) - 1] = True  # A fragment ends its episode or is cut.
            targets, advantages = vtrace(
                behaviour_logp=behaviour_logp, target_logp=target_logp,
                rewards=np.concatenate([f.columns[Columns.REWARDS] for f in fragments]),
                values=np.concatenate([v[:-1] for v in values]),
                next_values=np.concatenate([v[1:] for v in values]),
                terminateds=np.concatenate([f.columns[Columns.TERMINATEDS] for f in fragments]),
                ends=ends, gamma=config.gamma,
                clip_rho_threshold=config.vtrace_clip_rho_threshold,
                clip_pg_rho_threshold=config.vtrace_clip_pg_rho_threshold,
                lambda_=config.lambda_)
            advantages, targets = np.split(advantages, splits), np.split(targets, splits)
        else:
            advantages, targets = compute_gae(fragments, values, config.gamma, config.lambda_)
        columns = {Columns.ADVANTAGES: advantages, Columns.VALUE_TARGETS: targets,
                   _IS_WEIGHTS: np.split(is_weights, splits)}
        if config.use_kl_loss:
            columns[TARGET_NETWORK_ACTION_DIST_INPUTS] = np.split(target_inputs, splits)
        return columns

    def _target_action_dist_inputs(self, module_id: str,
                                   fragments: Sequence[Fragment]) -> np.ndarray:
        """``forward_target`` over all of the module's fragments, [N, ...] in their order (a
        stateful module runs each fragment as sequences from its recorded ``state_in``)."""
        module = self.module[module_id]

        def concat(name: str) -> Any:
            return map_tree(lambda *xs: np.concatenate(xs), *[f.columns[name] for f in fragments])

        batch, mask = {Columns.OBS: concat(Columns.OBS)}, None
        max_seq_len = self._max_seq_len[module_id]
        if max_seq_len:
            batch[Columns.STATE_IN] = concat(Columns.STATE_IN)
            batch = cut_sequences(batch, [len(f) for f in fragments], max_seq_len)
            mask = batch.pop(Columns.LOSS_MASK)
        with torch.no_grad():
            out = module.forward_target(self._to_device(batch))[TARGET_NETWORK_ACTION_DIST_INPUTS]
        out = out.float().cpu().numpy()
        return out if mask is None else out[mask]

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: dict[str, Any],
                                fwd_out: dict[str, Any]) -> torch.Tensor:
        """-surrogate + vf_loss_coeff * 0.5 * squared error to the value targets
        - entropy_coeff * entropy (+ kl_coeff * KL(target || current) with use_kl_loss).

        The surrogate clips the ratio current / behaviour times the importance weight
        behaviour / target (itself clipped at ``target_worker_clipping``), so the trust
        region is around the target policy, however old the sampled data. Logs RLlib's
        terms: policy_loss, vf_loss, vf_explained_var, entropy (and mean_kl_loss)."""
        module = self.module[module_id]
        mask = batch.get(Columns.LOSS_MASK)  # Only set for sequences of stateful modules.
        dist_cls = module.get_train_action_dist_cls()
        dist = dist_cls.from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        actions, behaviour_logp = batch[Columns.ACTIONS], batch[Columns.ACTION_LOGP]
        ratio = batch[_IS_WEIGHTS] * torch.exp(dist.logp(actions) - behaviour_logp)
        advantages = batch[Columns.ADVANTAGES]
        clipped = ratio.clamp(1 - config.clip_param, 1 + config.clip_param)
        surrogate = torch.min(ratio * advantages, clipped * advantages)
        policy_loss = -masked_mean(surrogate, mask)

        values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
        vf_loss = 0.5 * masked_mean((values - batch[Columns.VALUE_TARGETS]) ** 2, mask)
        entropy = masked_mean(dist.entropy(), mask)
        total = policy_loss + config.vf_loss_coeff * vf_loss - self.entropy_coeff * entropy
        if config.use_kl_loss:
            target_dist = dist_cls.from_logits(batch[TARGET_NETWORK_ACTION_DIST_INPUTS])
            total = total + self.kl_loss(module_id, target_dist, dist, mask)
        self.log_loss_terms(module_id, policy_loss, vf_loss, entropy, values,
                            batch[Columns.VALUE_TARGETS], mask)
        return total
