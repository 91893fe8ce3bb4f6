"""RayExecutor: run a render's tasks on the workers of a Ray cluster (``--ray ADDRESS``).

One Ray actor per GPU (``num_gpus=1`` when the render uses CUDA) or per CPU slot of
``--ray_cpus_per_task`` CPUs (torch threads set to match). Each actor loads the models once,
from the model paths of the job's configuration (made absolute by the driver; a node without
that path looks the file up by name in ``--checkpoints_dir``), and then runs tasks with the
same :func:`~metamusic.render.executor.execute` as a local render, in a scratch folder of its
own. It returns the task's files as bytes, so no shared filesystem is needed: the driver writes
them into the run folder's scratch and records the task, alone.

Scheduling follows ``Task.needs``: every task whose needs are recorded is submitted to an idle
worker. Independent keyframe batches run in parallel, then the frame chunks; chains (frame mode,
warm-started keyframes) run one task after another. A worker killed mid-task is restarted by Ray
and the task retried: every random draw is seeded from (seed, segment, step), so the retried
task returns the same output. Ray is imported only here, and only when ``--ray`` is given.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metamusic.errors import InputError
from metamusic.render.executor import LoadInputs, Record
from metamusic.render.plan import Task
from metamusic.render.tasks import Job, TaskOutput

if TYPE_CHECKING:
    from torch import device as torch_device

log = logging.getLogger("metamusic")

MAX_RETRIES = 3  # restarts of a killed worker, and retries of the task it was running


def _model_paths_absolute(job: Job) -> Job:
    """The job with its model files as absolute paths (Ray workers run in another folder)."""
    models = job.config.models

    def absolute(path: str) -> str:
        p = Path(path).expanduser()
        return str(p.resolve()) if p.exists() else path

    models = dataclasses.replace(
        models, vqgan_config=absolute(models.vqgan_config), vqgan_checkpoint=absolute(models.vqgan_checkpoint),
        clip_model=absolute(models.clip_model), checkpoints_dir=absolute(models.checkpoints_dir))
    config = dataclasses.replace(job.config, models=models)
    targets = [[t if t.embed.device.type == "cpu" else t.to("cpu") for t in seg] for seg in job.targets]
    return dataclasses.replace(job, config=config, targets=targets, z0=job.z0.detach().cpu())


def _local_model_paths(config: Any) -> Any:
    """On a worker: a model path this node lacks is looked up by file name in --checkpoints_dir."""
    models = config.models
    folder = Path(models.checkpoints_dir)

    def here(path: str) -> str:
        p = Path(path)
        if p.exists() or not (folder / p.name).exists():
            return path
        return str(folder / p.name)

    models = dataclasses.replace(models, vqgan_config=here(models.vqgan_config),
                                 vqgan_checkpoint=here(models.vqgan_checkpoint), clip_model=here(models.clip_model))
    return dataclasses.replace(config, models=models)


class TaskWorker:
    """A Ray actor: the models, loaded once, and a private scratch folder."""

    def __init__(self, job: Job, device: str, threads: int, build_models: Callable[[torch_device], Any] | None = None):
        import torch

        from metamusic.render.prepare import load_models
        from metamusic.render.tasks import Context

        torch.set_num_threads(max(1, threads))
        config = _local_model_paths(job.config)
        config = dataclasses.replace(config, device=device)
        job = dataclasses.replace(job, config=config)
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        dev = torch.device(device)
        if dev.type != "cpu":  # the job travels with CPU tensors; tasks expect targets on their device
            job = dataclasses.replace(job, targets=[[t.to(dev) for t in seg] for seg in job.targets])
        if build_models is not None:  # bench/scale.py: real-size models with random weights
            models = build_models(dev)
        else:
            models = load_models(config, need_audio=False)  # the targets are encoded already: no Wav2CLIP
        self.scratch = Path(tempfile.mkdtemp(prefix="metamusic-worker-"))
        self.ctx = Context(job, models, dev, self.scratch)

    def pid(self) -> int:
        return os.getpid()

    def run(self, task: Task, inputs: dict[str, Any]) -> tuple[TaskOutput, dict[str, bytes]]:
        """Run ``task``; return its output and its files' bytes (by run-folder name)."""
        from metamusic.render.executor import execute

        shutil.rmtree(self.scratch, ignore_errors=True)
        self.scratch.mkdir(parents=True)
        output = execute(self.ctx, task, inputs)
        files = {name: Path(path).read_bytes() for name, path in output.files.items()}
        output.files = {}
        return output, files


LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # Ray's single-machine mode: node IP 127.0.0.1


def is_loopback(address: str) -> bool:
    """True for ``local`` and for addresses on this machine's loopback (127.x, localhost, ::1)."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return address == "local" or host in ("localhost", "::1") or host.startswith("127.")


def connect(address: str) -> Any:
    """Import Ray and join ``address``: ``auto``, ``local`` (a private cluster here), host:port, ray://...

    A private or loopback cluster runs in Ray's single-machine mode, so every Ray process talks
    over 127.0.0.1 (otherwise Ray swaps a loopback address for the machine's network address).
    Set before Ray is imported: Ray reads it once.
    """
    if is_loopback(address):
        for key, value in LOOPBACK_ENV.items():
            os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        raise InputError(f"--ray {address}: Ray is not installed (pip install \"metamusic[ray]\")") from None
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        if address == "local":
            ray.init(address="local", include_dashboard=False, **kwargs)  # never an existing cluster
        else:
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
                raise InputError(f"--ray {address}: cannot join the Ray cluster ({first})") from None
    return ray


class RayExecutor:
    """Runs a render's tasks on Ray actors; the driver records their outputs (see module doc)."""

    def __init__(self, address: str, *, cpus_per_task: int = 1, max_workers: int | None = None,
                 build_models: Callable[[Any], Any] | None = None):
        if cpus_per_task < 1:
            raise InputError(f"--ray_cpus_per_task {cpus_per_task}: must be at least 1")
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.max_workers = max_workers
        self.build_models = build_models  # picklable factory device -> Models (default: the job's model files)
        self.scratch: Path | None = None
        self.progress: Any = None

    def attach(self, scratch: Path, progress: Any = None) -> None:
        """Where the driver puts returned files before recording them, and the render's progress."""
        self.scratch = scratch
        self.progress = progress

    def run(self, job: Job, tasks: Sequence[Task], load: LoadInputs, record: Record) -> None:
        from tqdm import tqdm

        if not tasks:
            return
        ray = connect(self.address)
        cuda = job.config.device.startswith("cuda")
        resources = ray.cluster_resources()
        slots = int(resources.get("GPU", 0)) if cuda else int(resources.get("CPU", 1)) // self.cpus_per_task
        if slots < 1:
            raise InputError(f"--ray {self.address}: the cluster has no {'GPU' if cuda else 'CPU slot'} for a worker")
        parallel = _max_parallel(job, tasks)
        n_workers = max(1, min(slots, parallel, self.max_workers or slots))
        if parallel == 1:
            log.info("ray: these tasks form a chain: they run in order on one worker (spread songs with "
                     "metamusic-batch to use more)")
        log.info("ray: %d worker(s) (%s) for %d task(s)", n_workers,
                 "1 GPU each" if cuda else f"{self.cpus_per_task} CPU each", len(tasks))
        actor_class = ray.remote(TaskWorker).options(
            num_gpus=1 if cuda else 0, num_cpus=0 if cuda else self.cpus_per_task,
            max_restarts=MAX_RETRIES, max_task_retries=MAX_RETRIES)
        job_ref = ray.put(_model_paths_absolute(job))  # once into the object store; each node fetches it once
        device = "cuda" if cuda else "cpu"
        workers = [actor_class.remote(job_ref, device, self.cpus_per_task, self.build_models) for _ in range(n_workers)]
        scratch = self.scratch or Path(tempfile.mkdtemp(prefix="metamusic-driver-"))
        bar = tqdm(total=len(tasks), desc="tasks", unit="task", dynamic_ncols=True, disable=None)
        try:
            self._schedule(ray, workers, tasks, load, record, scratch, bar)
        finally:
            bar.close()
            for worker in workers:
                ray.kill(worker)

    def _schedule(self, ray: Any, workers: list[Any], tasks: Sequence[Task], load: LoadInputs, record: Record,
                  scratch: Path, bar: Any) -> None:
        pending_ids = {t.id for t in tasks}
        waiting = list(tasks)
        idle = list(workers)
        running: dict[Any, tuple[Task, Any, float]] = {}
        while waiting or running:
            for task in [t for t in waiting if not (set(t.needs) & pending_ids)]:
                if not idle:
                    break
                worker = idle.pop(0)
                waiting.remove(task)
                running[worker.run.remote(task, load(task))] = (task, worker, time.perf_counter())
            if not running:
                raise RuntimeError(f"tasks wait for tasks that never run: {[t.id for t in waiting]}")
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                task, worker, t0 = running.pop(ref)
                output, files = ray.get(ref)
                output.files = _write_files(scratch, task, files)
                record(task, output)
                pending_ids.discard(task.id)
                idle.append(worker)
                bar.update(1)
                self._advance(task, output)
                log.debug("ray: %s finished in %.1f s (%.1f s in the worker)", task.id, time.perf_counter() - t0,
                          output.seconds)

    def _advance(self, task: Task, output: TaskOutput) -> None:
        if self.progress is None:
            return
        if output.steps and hasattr(self.progress, "steps_done"):
            self.progress.steps_done(output.steps)
        if output.frames:
            self.progress.frames(task, output.frames)


def _write_files(scratch: Path, task: Task, files: dict[str, bytes]) -> dict[str, Path]:
    """Write a task's returned files into the driver's scratch folder; their paths by run-folder name."""
    from metamusic.files import atomic_write_bytes

    out = {}
    for name, data in files.items():
        path = scratch / task.id / Path(name).name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        out[name] = path
    return out


def _max_parallel(job: Job, tasks: Sequence[Task]) -> int:
    """How many of ``tasks`` can ever run at once: 1 for a chain, else the widest layer."""
    ids = {t.id for t in tasks}
    depth: dict[str, int] = {}
    for task in tasks:  # plan order satisfies every need
        depth[task.id] = 1 + max((depth.get(n, 0) for n in task.needs if n in ids), default=0)
    layers: dict[int, int] = {}
    for d in depth.values():
        layers[d] = layers.get(d, 0) + 1
    return max(layers.values())
