"""Names of the columns that flow between env runners, modules and learners (RLlib's, with
the same string values), and the names of checkpoint components."""


class Columns:
    """String keys of batches and forward outputs; one name per concept everywhere."""

    OBS = "obs"
    INFOS = "infos"
    ACTIONS = "actions"
    ACTIONS_FOR_ENV = "actions_for_env"  # What env.step() got (e.g. clipped, unsquashed).
    REWARDS = "rewards"
    TERMINATEDS = "terminateds"
    TRUNCATEDS = "truncateds"
    NEXT_OBS = "new_obs"
    EPS_ID = "eps_id"
    AGENT_ID = "agent_id"
    MODULE_ID = "module_id"
    SEQ_LENS = "seq_lens"  # Real lengths of zero-padded [B, T, ...] sequences.
    T = "t"  # Timestep inside the episode.
    STATE_IN = "state_in"
    NEXT_STATE_IN = "next_state_in"
    STATE_OUT = "state_out"
    NEXT_STATE_OUT = "next_state_out"
    EMBEDDINGS = "embeddings"
    FEATURES = "features"
    ACTION_DIST_INPUTS = "action_dist_inputs"
    # The alpha API's output key: a distribution object instead of its inputs.
    ACTION_DIST = "action_dist"
    ACTION_PROB = "action_prob"
    ACTION_LOGP = "action_logp"
    VF_PREDS = "vf_preds"
    VALUES_BOOTSTRAPPED = "values_bootstrapped"  # V(s) one step past the last one taken.
    ADVANTAGES = "advantages"
    VALUE_TARGETS = "value_targets"
    RETURNS_TO_GO = "returns_to_go"
    INTRINSIC_REWARDS = "intrinsic_rewards"
    LOSS_MASK = "loss_mask"


DEFAULT_MODULE_ID = "default_policy"
"""Module ID of the single module in single-agent training."""
DEFAULT_POLICY_ID = DEFAULT_MODULE_ID
DEFAULT_AGENT_ID = "default_agent"
"""Agent ID RLlib gives the one agent of a single-agent env."""
ALL_MODULES = "__all_modules__"
"""Learner results key for numbers about the whole update (e.g. num_env_steps_trained), and
the module ID of optimizers spanning several modules (RLlib's)."""

ENCODER_OUT = "encoder_out"
"""Key under which an encoder returns its embeddings (e.g. a shared encoder sub-module)."""

# Checkpoint component names (paths such as "learner_group/learner/rl_module/p0").
COMPONENT_ENV_RUNNER = "env_runner"
COMPONENT_EVAL_ENV_RUNNER = "eval_env_runner"
COMPONENT_ENV_TO_MODULE_CONNECTOR = "env_to_module_connector"
COMPONENT_MODULE_TO_ENV_CONNECTOR = "module_to_env_connector"
COMPONENT_LEARNER_GROUP = "learner_group"
COMPONENT_LEARNER = "learner"
COMPONENT_RL_MODULE = "rl_module"
COMPONENT_MULTI_RL_MODULE_SPEC = "_multi_rl_module_spec"
COMPONENT_OPTIMIZER = "optimizer"
COMPONENT_METRICS_LOGGER = "metrics_logger"
