"""RLlibCallback: user code called at fixed points of training, with RLlib 2.60's hooks.

``config.callbacks(MyCallback)`` (or a list of classes, or per-hook callables such as
``config.callbacks(on_episode_end=fn, on_train_result=[f, g])``) is turned into one
``Callbacks`` object by ``make_callbacks``; env runners, learners and the algorithm call its
hooks with keyword arguments only. ``Callbacks.uses(hook)`` tells a hot loop whether a hook
does anything, so unused hooks cost nothing.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

HOOKS = ("on_algorithm_init", "on_train_result", "on_evaluate_start", "on_evaluate_end",
         "on_env_runners_recreated", "on_checkpoint_loaded", "on_environment_created",
         "on_episode_created", "on_episode_start", "on_episode_step", "on_episode_end",
         "on_sample_end")


class RLlibCallback:
    """Subclass and override the hooks you need; every argument is passed by keyword.

    Algorithm side: ``on_algorithm_init(algorithm, metrics_logger)``,
    ``on_train_result(algorithm, metrics_logger, result)`` (may change ``result``),
    ``on_evaluate_start(algorithm, metrics_logger)``,
    ``on_evaluate_end(algorithm, metrics_logger, evaluation_metrics)``,
    ``on_env_runners_recreated(algorithm, env_runner_group, env_runner_indices,
    is_evaluation)``, ``on_checkpoint_loaded(algorithm)``. Env-runner side:
    ``on_environment_created(env_runner, metrics_logger, env, env_context)``,
    ``on_episode_created / on_episode_start / on_episode_step / on_episode_end(episode,
    env_runner, metrics_logger, env, env_index, rl_module)``,
    ``on_sample_end(env_runner, metrics_logger, samples)``.
    """

    def on_algorithm_init(self, *, algorithm: Any, metrics_logger: Any = None,
                          **kwargs: Any) -> None:
        pass

    def on_train_result(self, *, algorithm: Any, metrics_logger: Any = None,
                        result: dict, **kwargs: Any) -> None:
        pass

    def on_evaluate_start(self, *, algorithm: Any, metrics_logger: Any = None,
                          **kwargs: Any) -> None:
        pass

    def on_evaluate_end(self, *, algorithm: Any, metrics_logger: Any = None,
                        evaluation_metrics: dict, **kwargs: Any) -> None:
        pass

    def on_env_runners_recreated(self, *, algorithm: Any, env_runner_group: Any,
                                 env_runner_indices: list[int], is_evaluation: bool,
                                 **kwargs: Any) -> None:
        pass

    def on_checkpoint_loaded(self, *, algorithm: Any, **kwargs: Any) -> None:
        pass

    def on_environment_created(self, *, env_runner: Any, metrics_logger: Any = None,
                               env: Any, env_context: Any, **kwargs: Any) -> None:
        pass

    def on_episode_created(self, *, episode: Any, env_runner: Any = None,
                           metrics_logger: Any = None, env: Any = None, env_index: int,
                           rl_module: Any = None, **kwargs: Any) -> None:
        pass

    def on_episode_start(self, *, episode: Any, env_runner: Any = None,
                         metrics_logger: Any = None, env: Any = None, env_index: int,
                         rl_module: Any = None, **kwargs: Any) -> None:
        pass

    def on_episode_step(self, *, episode: Any, env_runner: Any = None,
                        metrics_logger: Any = None, env: Any = None, env_index: int,
                        rl_module: Any = None, **kwargs: Any) -> None:
        pass

    def on_episode_end(self, *, episode: Any, env_runner: Any = None,
                       metrics_logger: Any = None, env: Any = None, env_index: int,
                       rl_module: Any = None, **kwargs: Any) -> None:
        pass

    def on_sample_end(self, *, env_runner: Any = None, metrics_logger: Any = None,
                      samples: Any, **kwargs: Any) -> None:
        pass


DefaultCallbacks = RLlibCallback  # RLlib's older name.

CallbackSpec = type | Sequence[type] | None
HookSpec = Callable | Sequence[Callable] | None


class Callbacks:
    """The configured callback objects and per-hook callables, called in that order."""

    def __init__(self, instances: Iterable[RLlibCallback],
                 functions: dict[str, list[Callable]]) -> None:
        self.instances = list(instances)
        self._calls: dict[str, list[Callable]] = {}
        for hook in HOOKS:
            calls = [getattr(obj, hook) for obj in self.instances
                     if getattr(type(obj), hook) is not getattr(RLlibCallback, hook)]
            calls += functions.get(hook, [])
            if calls:
                self._calls[hook] = calls

    def uses(self, hook: str) -> bool:
        """Whether calling ``hook`` does anything (so callers can skip building arguments)."""
        return hook in self._calls

    def call(self, hook: str, **kwargs: Any) -> None:
        for fn in self._calls.get(hook, ()):
            fn(**kwargs)


def make_callbacks(callbacks_class: CallbackSpec = None,
                   hooks: dict[str, HookSpec] | None = None) -> Callbacks:
    """One Callbacks object from ``config.callbacks(...)``'s class(es) and hook callables."""
    classes = [] if callbacks_class is None else list(callbacks_class) if isinstance(
        callbacks_class, (list, tuple)) else [callbacks_class]
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, RLlibCallback)):
            raise TypeError(f"callbacks: {cls!r} is not an RLlibCallback subclass; pass the "
                            "class (not an instance), a list of classes, or per-hook "
                            "callables such as callbacks(on_episode_end=fn).")
    functions: dict[str, list[Callable]] = {}
    for hook, spec in (hooks or {}).items():
        if hook not in HOOKS:
            raise TypeError(f"callbacks: unknown hook '{hook}'; hooks are {list(HOOKS)}.")
        fns = [] if spec is None else list(spec) if isinstance(spec, (list, tuple)) else [spec]
        if not all(callable(fn) for fn in fns):
            raise TypeError(f"callbacks({hook}=...) takes a callable or a list of callables.")
        functions[hook] = fns
    return Callbacks([cls() for cls in classes], functions)
