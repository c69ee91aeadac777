"""rosbag2 teleop bags -> time-aligned episodes (HDF5 files, or a LeRobot v2.1 dataset).

The two orchestrations; each step lives in its own module:
plan (planning.py): each bag's EpisodeEvents are read and cut into episode jobs.
extract (extract.py, aligners.py, clocks.py, jpeg.py): one episode's streams are read in its time
    window and put on the control grid with the rule of each stream (docs/data.md "Alignment").
write (jobs.py, hdf5.py or lerobot.py): the episode goes to its file under a temporary name,
    renamed when complete; episodes convert in parallel processes.
Every failure is reported per episode (a bag that cannot be opened fails its own episodes only)
and the summary says what happened to each.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.hdf5 import read_episode
from psi0_ros.data.jobs import ConversionSummary, HDF5Sink, default_workers, run_jobs
from psi0_ros.data.planning import STATUS_OK, EpisodeJob, EpisodeResult, plan


def _names(jobs: list[EpisodeJob]) -> list[str]:
    return [f"{Path(job.bag).name} episode {job.span.index}" for job in jobs]


def _in_order(results: list[EpisodeResult]) -> list[EpisodeResult]:
    return sorted(results, key=lambda r: (r.bag, -1 if r.episode_index is None else r.episode_index))


def convert_bags(
    paths: Iterable[Path | str],
    out_dir: Path,
    config: ConvertConfig,
    workers: int | None = None,
    overwrite: bool = False,
    default_task: str = "",
    progress: bool = False,
) -> ConversionSummary:
    """Convert bags to one HDF5 file per episode in out_dir."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bags, jobs, results = plan(paths, out_dir, config, default_task)
    since_ns = time.time_ns()
    done = run_jobs(jobs, config, HDF5Sink(overwrite), workers or default_workers(), progress)
    results.extend(done.results)
    # A worker may finish its file in the instant between Ctrl-C and its stop: that file is
    # complete (written under a temporary name, then renamed) and is reported as converted.
    for job in list(done.interrupted):
        if job.output.is_file() and job.output.stat().st_mtime_ns >= since_ns:
            episode = read_episode(job.output, images=False)
            results.append(
                EpisodeResult(
                    str(job.bag),
                    job.span.index,
                    STATUS_OK,
                    output=str(job.output),
                    frames=episode.num_frames,
                    task=str(episode.attrs.get("task", "")),
                    outcome=str(episode.attrs.get("outcome", "")),
                    flags=list(episode.attrs.get("flags", [])),
                )
            )
            done.interrupted.remove(job)
    return ConversionSummary(
        str(out_dir),
        "hdf5",
        [str(b) for b in bags],
        _in_order(results),
        round(time.perf_counter() - started, 3),
        interrupted=_names(done.interrupted),
    )


def export_lerobot(
    paths: Iterable[Path | str],
    out_dir: Path,
    config: ConvertConfig,
    workers: int | None = None,
    default_task: str = "",
    progress: bool = False,
    codec: str = "h264",
) -> ConversionSummary:
    """Convert bags to a new LeRobot v2.1 dataset in out_dir (episodes numbered in bag order)."""
    from psi0_ros.data.lerobot import LeRobotSink, check_output, finalize

    started = time.perf_counter()
    out_dir = Path(out_dir)
    check_output(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bags, jobs, results = plan(paths, out_dir, config, default_task)
    done = run_jobs(jobs, config, LeRobotSink(out_dir, config.fps, codec), workers or default_workers(), progress)
    if done.interrupted:  # no dataset from part of the episodes: the staged ones are removed
        shutil.rmtree(out_dir, ignore_errors=True)
        return ConversionSummary(
            str(out_dir),
            "lerobot",
            [str(b) for b in bags],
            _in_order(results + done.results),
            round(time.perf_counter() - started, 3),
            interrupted=_names(done.interrupted),
        )
    converted = done.results
    staged = [Path(r.output) for r in converted if r.status == STATUS_OK and r.output]
    written = finalize(out_dir, staged, config.fps)
    for result in converted:
        if result.status == STATUS_OK and result.output:
            result.output = str(written[result.output])
    results.extend(converted)
    return ConversionSummary(
        str(out_dir), "lerobot", [str(b) for b in bags], _in_order(results), round(time.perf_counter() - started, 3)
    )
