"""Names of the columns that flow between env runners, modules and learners."""


class Columns:
    """String keys of batches and forward outputs; one name per concept everywhere."""

    OBS = "obs"
    NEXT_OBS = "new_obs"
    INFOS = "infos"
    ACTIONS = "actions"
    REWARDS = "rewards"
    TERMINATEDS = "terminateds"
    TRUNCATEDS = "truncateds"
    ACTION_DIST_INPUTS = "action_dist_inputs"
    # The alpha API's output key: a distribution object instead of its inputs.
    ACTION_DIST = "action_dist"
    ACTION_LOGP = "action_logp"
    ACTION_PROB = "action_prob"
    VF_PREDS = "vf_preds"
    VALUES_BOOTSTRAPPED = "values_bootstrapped"
    STATE_IN = "state_in"
    STATE_OUT = "state_out"
    EMBEDDINGS = "embeddings"
    ADVANTAGES = "advantages"
    VALUE_TARGETS = "value_targets"
    RETURNS_TO_GO = "returns_to_go"
    LOSS_MASK = "loss_mask"
    SEQ_LENS = "seq_lens"
    EPS_ID = "eps_id"
    AGENT_ID = "agent_id"
    MODULE_ID = "module_id"


DEFAULT_MODULE_ID = "default_policy"
"""Module ID of the single module in single-agent training."""

ENCODER_OUT = "encoder_out"
"""Key under which an encoder returns its embeddings (e.g. a shared encoder sub-module)."""
