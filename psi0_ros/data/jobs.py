"""Running episode jobs: one episode start to finish (in a worker process), the process pool,
and the summary of a whole conversion."""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from psi0_ros.data.aligners import EpisodeError
from psi0_ros.data.bags import BagError, BagReader
from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.episode_schema import TEMP_MARKER, EpisodeData
from psi0_ros.data.extract import extract_episode
from psi0_ros.data.hdf5 import write_episode
from psi0_ros.data.planning import STATUS_ERROR, STATUS_OK, STATUS_SKIPPED, STATUSES, EpisodeJob, EpisodeResult
from psi0_ros.data.typestore import shared_typestore

# Where a converted episode goes: a picklable callable (it travels to the worker processes).
EpisodeSink = Callable[[EpisodeData, EpisodeJob], Path]


@dataclass(frozen=True)
class HDF5Sink:
    overwrite: bool = False

    def __call__(self, episode: EpisodeData, job: EpisodeJob) -> Path:
        return write_episode(episode, job.output, overwrite=self.overwrite)


def convert_episode(job: EpisodeJob, config: ConvertConfig, sink: EpisodeSink) -> EpisodeResult:
    """Extract and write one episode; every failure becomes an error result (no file left)."""
    started = time.perf_counter()
    result = EpisodeResult(str(job.bag), job.span.index, STATUS_ERROR, task=job.span.task, outcome=job.span.outcome)
    try:
        with BagReader(job.bag) as reader:
            episode = extract_episode(reader, job.span, config)
        written = sink(episode, job)
        result.status, result.output = STATUS_OK, str(written)
        result.frames, result.task = episode.num_frames, str(episode.attrs.get("task", ""))
        result.flags = list(episode.attrs.get("flags", []))
    except FileExistsError as err:
        result.status, result.error = STATUS_SKIPPED, str(err)
    except (BagError, EpisodeError, OSError, ValueError) as err:
        result.error = str(err)
    except Exception as err:  # a bug or an unforeseen input: report it, keep converting the rest
        result.error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=4)}"
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; elsewhere (macOS, Windows) spawn is the safe default.
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent, which stops them (Pool.terminate) and removes what a
    stopped worker left half-written (remove_temporaries)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _convert_indexed(item: tuple[int, EpisodeJob, ConvertConfig, EpisodeSink]) -> tuple[int, EpisodeResult]:
    index, job, config, sink = item
    return index, convert_episode(job, config, sink)


@dataclass
class JobResults:
    """What run_jobs finished, in job order, and the jobs a Ctrl-C left undone."""

    results: list[EpisodeResult]
    interrupted: list[EpisodeJob] = field(default_factory=list)


def run_jobs(
    jobs: Sequence[EpisodeJob],
    config: ConvertConfig,
    sink: EpisodeSink,
    workers: int,
    progress: bool = False,
) -> JobResults:
    """Convert the jobs, in parallel when workers > 1; results in job order.

    Ctrl-C (KeyboardInterrupt) stops promptly: queued jobs are dropped, running ones are stopped
    and their temporary files removed; the finished ones are returned with the undone ones.
    """
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="episode", disable=not progress, file=sys.stderr, desc="convert")
    results: list[EpisodeResult | None] = [None] * len(jobs)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = convert_episode(job, config, sink)
                bar.update(1)
        else:
            warm_decoders(jobs[0].bag)
            # What exists now is never collected in the workers: a full collection there walks
            # every object inherited from this process and writes to the page of each (the
            # copy-on-write of nearly all of them, ~70 ms a worker). This process collects them
            # as before once the workers are forked.
            gc.freeze()
            try:
                pool = _pool_context().Pool(min(workers, len(jobs)), initializer=_worker_init)
            finally:
                gc.unfreeze()
            try:
                items = [(i, job, config, sink) for i, job in enumerate(jobs)]
                for i, result in pool.imap_unordered(_convert_indexed, items):
                    results[i] = result
                    bar.update(1)
                pool.close()
            except BaseException:
                pool.terminate()  # SIGTERM to the workers: a running episode stops where it is
                raise
            finally:
                pool.join()
    except KeyboardInterrupt:
        pass
    finally:
        bar.close()
    undone = [job for job, result in zip(jobs, results, strict=True) if result is None]
    for job in undone:
        remove_temporaries(job.output)
    return JobResults([r for r in results if r is not None], undone)


def warm_decoders(bag: Path) -> None:
    """Prepare the decoding of a bag's connections in this process, before the workers fork.

    Per process, a bag's message definitions are parsed once (typestore.bag_definition_store, ~10 ms
    each) and rosbags generates a type's deserialiser code on its first message (~10 ms each). Done
    here for the first bag (the bags of a dataset share their definitions), every worker inherits
    both instead of doing them again: ~0.1 s a worker. A bag that fails here is left to its
    episodes' jobs, which report why."""
    store = shared_typestore()
    try:
        with BagReader(bag) as reader:
            for connection in reader.connections_all:
                reader.decoder(connection)
                if connection.msgtype in store.types:
                    store.get_msgdef(connection.msgtype)
    except (BagError, OSError):
        pass


def remove_temporaries(output: Path) -> None:
    """Temporaries of an episode file left by any process (a worker stopped mid-write)."""
    for temp in output.parent.glob(f".{output.name}{TEMP_MARKER}*"):
        temp.unlink(missing_ok=True)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass
class ConversionSummary:
    output: str
    format: str
    bags: list[str]
    episodes: list[EpisodeResult]
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    interrupted: list[str] = field(default_factory=list)  # episodes a Ctrl-C left unconverted

    @property
    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        for result in self.episodes:
            counts[result.status] += 1
        return counts

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.episodes)

    @property
    def ok(self) -> bool:
        return self.counts[STATUS_ERROR] == 0 and not self.interrupted

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": self.output,
            "format": self.format,
            "bags": self.bags,
            "counts": self.counts,
            "frames": self.frames,
            "seconds": self.seconds,
            **self.extra,
            **({"interrupted": self.interrupted} if self.interrupted else {}),
            "episodes": [asdict(r) for r in self.episodes],
        }
