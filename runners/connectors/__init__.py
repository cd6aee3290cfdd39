"""Connector pipelines with RLlib's ConnectorV2 API: env-to-module and module-to-env on env
runners, learner connectors on learners (see each module's docstring)."""

from runners.connectors.build import (INPUT_ENV_SINGLE_SPACES, INPUT_ENV_SPACES,
                                      build_env_to_module, build_learner_connector,
                                      build_module_to_env, env_spaces)
from runners.connectors.connector_v2 import ConnectorV2
from runners.connectors.env_to_module import (AddObservationsFromEpisodesToBatch,
                                              FlattenObservations, FrameStackingEnvToModule,
                                              MeanStdFilter, MultiAgentObservationPreprocessor,
                                              PrevActionsPrevRewards,
                                              SingleAgentObservationPreprocessor)
from runners.connectors.learner import (AddNextObservationsFromEpisodesToTrainBatch,
                                        FrameStackingLearner, IntrinsicCuriosityModelConnector)
from runners.connectors.module_to_env import NormalizeAndClipActions
from runners.connectors.pipeline import (ConnectorPipelineV2, EnvToModulePipeline,
                                         LearnerConnectorPipeline, ModuleToEnvPipeline)

__all__ = ["ConnectorV2", "ConnectorPipelineV2", "EnvToModulePipeline", "ModuleToEnvPipeline",
           "LearnerConnectorPipeline", "AddObservationsFromEpisodesToBatch",
           "FlattenObservations", "MeanStdFilter", "PrevActionsPrevRewards",
           "FrameStackingEnvToModule", "FrameStackingLearner",
           "SingleAgentObservationPreprocessor", "MultiAgentObservationPreprocessor",
           "AddNextObservationsFromEpisodesToTrainBatch", "IntrinsicCuriosityModelConnector",
           "NormalizeAndClipActions", "build_env_to_module", "build_module_to_env",
           "build_learner_connector", "env_spaces", "INPUT_ENV_SPACES",
           "INPUT_ENV_SINGLE_SPACES"]
