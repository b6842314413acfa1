"""The Ray backend: evaluations as calls on long-lived Ray actors, on one machine or a cluster.

Each actor holds an evaluator and, after its first call, the data resident on its device:
the data are loaded once per actor, never shipped per task. GPU actors ask Ray for
1/slots_per_gpu of a GPU, so K of them share a card; CPU actors ask for `cpu_threads` CPUs.
Only the driver writes the run directory: actors return results and the runner journals
them, so resume works exactly as with the other backends.

An actor that dies mid-evaluation (its process killed, its node lost) is replaced and the
evaluation is sent again (backends.after_death says how often).
`ray` is imported here only, when this backend is chosen.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence

from evo_nas.backends import after_death
from evo_nas.config import BackendConfig
from evo_nas.errors import ConfigError
from evo_nas.records import Result

POLL = 1.0  # seconds per wait for finished evaluations


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("backend ray: the ray package is not installed; "
                          "install it with: pip install 'evo-nas[ray]'") from None
    return ray


class RayBackend:
    name = "ray"

    def __init__(self, cfg: BackendConfig):
        self.cfg = cfg
        self.ray = _ray()
        self.started_ray = False
        if not self.ray.is_initialized():
            try:
                self.ray.init(address=cfg.ray_address, include_dashboard=False, log_to_driver=False,
                              configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                where = cfg.ray_address or "a new local cluster"
                raise ConfigError(f"backend ray: cannot connect to {where} ({' '.join(str(err).split())[:200]})") \
                    from None
            self.started_ray = True
        self.actors: list = []
        self.fn = None

    def map(self, fn: Callable, tasks: Sequence, on_steps=None) -> Iterator[tuple[int, Result]]:
        """Backend.map; ray workers do not report steps (the progress moves per evaluation)."""
        if fn is not self.fn:
            self._stop_actors()
            self.fn = fn
            self.actors = [self._actor() for _ in range(self._pool_size())]
        todo = deque((i, task, 0) for i, task in enumerate(tasks))
        idle = deque(self.actors)
        running: dict = {}  # object ref -> (index, task, tries, actor)
        while todo or running:
            while todo and idle:
                i, task, tries = todo.popleft()
                actor = idle.popleft()
                running[actor.evaluate.remote(task)] = (i, task, tries, actor)
            done, _ = self.ray.wait(list(running), num_returns=1, timeout=POLL)
            for ref in done:
                i, task, tries, actor = running.pop(ref)
                try:
                    result = self.ray.get(ref)
                except self.ray.exceptions.RayActorError as err:
                    actor = self._replace(actor)
                    result = after_death(tries, f"ray worker died ({type(err).__name__})")
                    if result is None:
                        todo.appendleft((i, task, tries + 1))
                        idle.append(actor)
                        continue
                idle.append(actor)
                yield i, result

    def _pool_size(self) -> int:
        if self.cfg.workers:
            return self.cfg.workers
        resources = self.ray.cluster_resources()
        if self.cfg.device == "cuda":
            return max(1, int(resources.get("GPU", 0)) * self.cfg.slots_per_gpu)
        return max(1, int(resources.get("CPU", 1)) // max(1, self.cfg.cpu_threads))

    def _actor(self):
        options = ({"num_gpus": 1 / self.cfg.slots_per_gpu, "num_cpus": 1} if self.cfg.device == "cuda"
                   else {"num_cpus": self.cfg.cpu_threads})
        fn = self.fn
        if self.cfg.device == "cuda" and hasattr(fn, "on"):
            fn = fn.on("cuda")  # Ray sets CUDA_VISIBLE_DEVICES per actor
        return _actor_class(self.ray).options(**options).remote(fn)

    def _replace(self, actor):
        try:
            self.ray.kill(actor)
        except Exception:  # noqa: BLE001 - it is dead already, most likely
            pass
        new = self._actor()
        self.actors = [new if a is actor else a for a in self.actors]
        return new

    def _stop_actors(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        self.actors = []
        self.fn = None

    def close(self) -> None:
        self._stop_actors()
        if self.started_ray and self.ray.is_initialized():
            self.ray.shutdown()


_ACTOR = None


def _actor_class(ray):
    """The actor class, defined on first use so that importing this module needs no ray."""
    global _ACTOR
    if _ACTOR is None:
        @ray.remote(max_restarts=0, max_task_retries=0)
        class EvaluatorActor:
            def __init__(self, fn):
                self.fn = fn

            def evaluate(self, task):
                from evo_nas.errors import DeviceLost

                try:
                    return self.fn(task)
                except DeviceLost:  # a poisoned CUDA context: end the actor, Ray's replacement retries
                    import os

                    os._exit(75)

        _ACTOR = EvaluatorActor
    return _ACTOR

