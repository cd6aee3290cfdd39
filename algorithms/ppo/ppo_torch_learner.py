"""PPOTorchLearner: GAE advantages, the clipped-surrogate loss, the adaptive KL coefficient."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from algorithms.ppo.gae import compute_gae
from algorithms.returns import standardize
from learners import TorchLearner, masked_mean
from learners.learner import schedule_points
from rlmodules import Columns, SelfSupervisedLossAPI, ValueFunctionAPI
from runners.fragment import Fragment


class PPOTorchLearner(TorchLearner):
    """Trains modules that implement ValueFunctionAPI with PPO's loss."""

    @classmethod
    def rl_module_required_apis(cls) -> list[type]:
        return [ValueFunctionAPI]

    def build(self) -> None:
        super().build()
        self.kl_coeffs = {mid: float(self.config.kl_coeff) for mid in self.module.keys()}
        schedule_points(self.config.entropy_coeff, "entropy_coeff")  # Checked at build.

    @property
    def entropy_coeff(self) -> float:
        """``config.entropy_coeff``, or its schedule at the trained env steps so far (read
        from the config each time: Tune's reset_config may change it in place)."""
        value = self.config.entropy_coeff
        if isinstance(value, (int, float)):
            return float(value)  # The common case costs no interpolation per minibatch.
        return float(np.interp(self.num_env_steps_trained_lifetime,
                               *schedule_points(value, "entropy_coeff")))

    def compute_extra_columns_for_module(self, module_id: str, fragments: Sequence[Fragment]
                                         ) -> dict[str, list[np.ndarray]]:
        """ADVANTAGES and VALUE_TARGETS from GAE on each fragment (advantages standardized
        over the module's whole batch with normalize_advantages="batch"); none for modules
        with their own loss (SelfSupervisedLossAPI), which have no value function."""
        if isinstance(self.module[module_id], SelfSupervisedLossAPI):
            return {}
        values = self.compute_values_for_fragments(module_id, fragments)
        advantages, targets = compute_gae(fragments, values, self.config.gamma,
                                          self.config.lambda_)
        if self.config.normalize_advantages == "batch":
            advantages = np.split(standardize(np.concatenate(advantages)),
                                  np.cumsum([len(f) for f in fragments])[:-1])
        return {Columns.ADVANTAGES: advantages, Columns.VALUE_TARGETS: targets}

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: dict[str, Any],
                                fwd_out: dict[str, Any]) -> torch.Tensor:
        """-clipped surrogate + vf_loss_coeff * (clipped) squared value error
        - entropy_coeff * entropy (+ kl_coeff * KL(old || new) with use_kl_loss).

        Logs RLlib's terms: policy_loss, vf_loss, vf_explained_var, entropy (and
        mean_kl_loss with use_kl_loss)."""
        module = self.module[module_id]
        mask = batch.get(Columns.LOSS_MASK)  # Only set for sequences of stateful modules.
        dist_cls = module.get_train_action_dist_cls()
        dist = dist_cls.from_logits(fwd_out[Columns.ACTION_DIST_INPUTS])
        ratio = torch.exp(dist.logp(batch[Columns.ACTIONS]) - batch[Columns.ACTION_LOGP])

        advantages = batch[Columns.ADVANTAGES]
        if config.normalize_advantages == "minibatch":
            advantages = _standardize(advantages, mask)
        clipped_ratio = ratio.clamp(1 - config.clip_param, 1 + config.clip_param)
        policy_loss = -masked_mean(torch.min(ratio * advantages, clipped_ratio * advantages), mask)

        values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
        vf_error = (values - batch[Columns.VALUE_TARGETS]) ** 2
        if config.vf_clip_param is not None:
            vf_error = vf_error.clamp(max=config.vf_clip_param)
        vf_loss = masked_mean(vf_error, mask)
        entropy = masked_mean(dist.entropy(), mask)
        total = policy_loss + config.vf_loss_coeff * vf_loss - self.entropy_coeff * entropy

        if config.use_kl_loss:
            old_dist = dist_cls.from_logits(batch[Columns.ACTION_DIST_INPUTS])
            total = total + self.kl_loss(module_id, old_dist, dist, mask)
        self.log_loss_terms(module_id, policy_loss, vf_loss, entropy, values,
                            batch[Columns.VALUE_TARGETS], mask)
        return total

    def kl_loss(self, module_id: str, reference: Any, dist: Any,
                mask: torch.Tensor | None) -> torch.Tensor:
        """kl_coeff x mean KL(reference || dist), logged as mean_kl_loss (the reference is
        the sampling policy for PPO, the target network's for APPO)."""
        mean_kl = masked_mean(reference.kl(dist), mask)
        self.log_metric(module_id, "mean_kl_loss", mean_kl)
        return self.kl_coeffs[module_id] * mean_kl

    def log_loss_terms(self, module_id: str, policy_loss: torch.Tensor, vf_loss: torch.Tensor,
                       entropy: torch.Tensor, values: torch.Tensor, targets: torch.Tensor,
                       mask: torch.Tensor | None) -> None:
        """RLlib's policy_loss, vf_loss, vf_explained_var and entropy terms."""
        self.log_metric(module_id, "policy_loss", policy_loss)
        self.log_metric(module_id, "vf_loss", vf_loss)
        self.log_metric(module_id, "vf_explained_var",
                        explained_variance(targets, values.detach(), mask))
        self.log_metric(module_id, "entropy", entropy)

    def after_update(self, results: dict[str, dict[str, Any]]) -> None:
        """Report the next update's entropy coefficient (``curr_entropy_coeff``) of each
        trained module; adapt each KL coefficient towards ``kl_target`` from the mean KL,
        which all data-parallel learners share, so their coefficients stay equal."""
        for metrics in results.values():
            if isinstance(metrics, dict) and "entropy" in metrics:
                metrics["curr_entropy_coeff"] = self.entropy_coeff
        if not self.config.use_kl_loss:
            return
        for module_id, metrics in results.items():
            if not isinstance(metrics, dict) or "mean_kl_loss" not in metrics:
                continue
            if metrics["mean_kl_loss"] > 2.0 * self.config.kl_target:
                self.kl_coeffs[module_id] *= 1.5
            elif metrics["mean_kl_loss"] < 0.5 * self.config.kl_target:
                self.kl_coeffs[module_id] *= 0.5
            metrics["curr_kl_coeff"] = self.kl_coeffs[module_id]

    def get_state(self, components: str | Sequence[str] | None = None) -> dict[str, Any]:
        """The learner state plus the adapted KL coefficients (whole-state requests only)."""
        state = super().get_state(components)
        if components is None:
            state["kl_coeffs"] = dict(self.kl_coeffs)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        state = dict(state)
        self.kl_coeffs.update(state.pop("kl_coeffs", {}))
        super().set_state(state)


def explained_variance(targets: torch.Tensor, predictions: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """1 - Var[targets - predictions] / Var[targets], at least -1 (RLlib's vf_explained_var):
    1 for a perfect value function, 0 for one no better than predicting the mean."""
    ratio = _masked_var(targets - predictions, mask) / (_masked_var(targets, mask) + 1e-8)
    return (1.0 - ratio).clamp(min=-1.0)


def _masked_var(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return torch.var(x, correction=0)  # One kernel instead of four.
    return masked_mean((x - masked_mean(x, mask)) ** 2, mask)


def _standardize(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Zero mean, unit std over the real (unmasked) entries."""
    return (x - masked_mean(x, mask)) / (_masked_var(x, mask).sqrt() + 1e-8)
