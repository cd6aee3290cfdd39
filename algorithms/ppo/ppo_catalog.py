"""PPOCatalog: the actor-critic encoder and the policy and value heads of PPO modules."""

from __future__ import annotations

from rlmodules.catalog import Catalog, check_framework
from rlmodules.encoders import ActorCriticEncoder, Encoder, build_encoder
from rlmodules.heads import PolicyHead, ValueHead


class PPOCatalog(Catalog):
    """RLlib's PPOCatalog: ``build_actor_critic_encoder``, ``build_pi_head``, ``build_vf_head``.

    The encoder is shared by policy and value function when ``vf_share_layers`` (or
    ``use_lstm``: one recurrent state serves both); otherwise actor and critic get one each.
    Set ``inference_only = True`` before building to leave the critic encoder out (what
    DefaultPPOTorchRLModule does for inference-only builds; RLlib keeps this flag on the
    catalog's actor-critic encoder config).
    """

    inference_only: bool = False

    def build_actor_critic_encoder(self, framework: str = "torch") -> ActorCriticEncoder:
        """``encoder(batch)[ENCODER_OUT]`` is ``{ACTOR: ..., CRITIC: ...}`` of ``latent_dims``."""
        check_framework(self, framework)
        cfg = self.model_config
        return ActorCriticEncoder(lambda: build_encoder(self.observation_space, cfg),
                                  shared=cfg.vf_share_layers or cfg.use_lstm,
                                  inference_only=self.inference_only)

    def build_encoder(self, framework: str = "torch") -> Encoder:
        raise NotImplementedError(
            "PPOCatalog builds an actor-critic encoder: call build_actor_critic_encoder().")

    def build_pi_head(self, framework: str = "torch") -> PolicyHead:
        """Features -> inputs of ``get_action_dist_cls()`` for the action space."""
        return PolicyHead(self.latent_dims[0], self.action_space, self.model_config,
                          self.get_action_dist_cls(framework))

    def build_vf_head(self, framework: str = "torch") -> ValueHead:
        """Features -> one value per row, shape [..., 1]."""
        check_framework(self, framework)
        return ValueHead(self.latent_dims[0], self.model_config)
