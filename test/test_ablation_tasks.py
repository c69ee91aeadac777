"""`psi0 ablate tasks`: one full fine-tune per task, one multi-task model and one base plus a LoRA
adapter per task, trained for a few steps on two tiny tasks made here, on one held-out split;
the adapters leave their base bit-identical and take a small part of a full checkpoint's disk;
bad --demos arguments are one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from training import synthetic

INSTRUCTIONS = {"cup": "pick up the red cup", "drawer": "open the drawer"}
SEEDS = {"cup": 0, "drawer": 5}  # different trajectories per task
WAYS = ("per_task", "multi_task", "adapter")


def _task_episodes(root: Path, instruction: str, seed: int) -> Path:
    """Three tiny episodes that all carry one instruction (synthetic alternates two)."""
    for path in synthetic.write_episodes(root, episodes=3, frames=24, seed=seed):
        with h5py.File(path, "r+") as f:
            f.attrs["task"] = instruction
    return root


@pytest.fixture(scope="module")
def ablated(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from psi0_ros.cli import main

    root = tmp_path_factory.mktemp("ablate_tasks")
    demos = {task: _task_episodes(root / task, text, SEEDS[task]) for task, text in INSTRUCTIONS.items()}
    out = root / "tasks.json"
    arguments = ["ablate", "tasks", "--demos", *(f"{t}={d}" for t, d in demos.items()), "--preset", "tiny"]
    arguments += ["--set", "run.steps=3", "--set", "run.eval_every=100", "--adapter-set", "adapter.rank=4"]
    status = main([*arguments, "--val-episodes", "1", "--json", str(out)])
    return {"status": status, "out": out, "work": root / "tasks_runs", "demos": demos}


def _trained_on(output_dir: Path) -> set[Path]:
    """The episode files a training read (its split.json names links; resolve them)."""
    split = json.loads((output_dir / "split.json").read_text())
    assert split["held_out"] == []  # the job holds out; the trainings do not draw again
    return {Path(p).resolve() for p in split["train"]}


def test_three_ways_train_and_are_scored_on_the_held_out_episodes(ablated):
    assert ablated["status"] == 0
    document = json.loads(ablated["out"].read_text())
    rows = {(r["way"], r["task"]): r for r in document["rows"]}
    assert set(rows) == {(w, t) for w in WAYS for t in INSTRUCTIONS}
    for r in rows.values():
        assert (
            r["arms_first_rad"] > 0
            and r["open_loop"]["episodes"] == 1
            and r["train_task_s" if r["way"] != "multi_task" else "train_shared_s"] > 0
        )
        assert r["success_rate"] is None  # no closed loop asked for
    assert document["steps"] == 3 and document["preset"] == "tiny"
    # the multi-task model is one checkpoint for both tasks; the adapters' base is that model
    assert rows["multi_task", "cup"]["checkpoint"] == rows["multi_task", "drawer"]["checkpoint"]
    assert rows["adapter", "cup"]["checkpoint"] == rows["multi_task", "cup"]["checkpoint"]
    assert rows["multi_task", "cup"]["arms_first_rad"] != rows["per_task", "cup"]["arms_first_rad"]
    table = ablated["out"].with_suffix(".md").read_text()
    assert "| base + adapter per task | drawer |" in table and "| one multi-task model |" in table
    assert "psi0 ablate tasks --demos cup=" in table and "--set run.steps=3" in table


def test_every_way_trains_on_the_same_split(ablated):
    document = json.loads(ablated["out"].read_text())
    work = ablated["work"]
    held_out = {t: {Path(p).resolve() for p in files} for t, files in document["split"]["held_out"].items()}
    for task, directory in ablated["demos"].items():
        every = {p.resolve() for p in directory.glob("*.hdf5")}
        train = _trained_on(work / "per_task" / task)
        assert len(held_out[task]) == 1 and held_out[task] <= every
        assert train == every - held_out[task]  # the rest of the task's episodes, nothing held out
        assert _trained_on(work / "adapter" / task) == train
    union = set().union(*(_trained_on(work / "per_task" / t) for t in INSTRUCTIONS))
    assert _trained_on(work / "multi_task") == union
    assert not union & set().union(*held_out.values())


def test_adapters_leave_the_base_bit_identical_and_are_small(ablated):
    from psi0_ros.policy.adapters import base_sha256, read_adapter

    document = json.loads(ablated["out"].read_text())
    rows = {(r["way"], r["task"]): r for r in document["rows"]}
    base = Path(rows["multi_task", "cup"]["checkpoint"])
    for task in INSTRUCTIONS:
        adapter = read_adapter(Path(rows["adapter", task]["adapter"]))
        # hashed when each adapter's training started: both trainings left the base as it was
        assert adapter.base_sha256 == base_sha256(base)
        assert adapter.task == task and adapter.instructions == (INSTRUCTIONS[task],)
        full, small = rows["per_task", task], rows["adapter", task]
        assert small["trainable_parameters"] < 0.1 * full["trainable_parameters"]
        assert small["disk_task_mb"] < 0.25 * full["disk_task_mb"]
        assert small["disk_shared_mb"] == rows["multi_task", task]["disk_shared_mb"] > 0
    totals = {t["way"]: t for t in document["totals"]}
    assert (
        totals["adapter"]["disk_total_mb"] < totals["per_task"]["disk_total_mb"] + totals["multi_task"]["disk_total_mb"]
    )


@pytest.mark.parametrize(
    "demos, extra, message",
    [
        (["cup=MISSING", "drawer=DRAWER"], [], "no episode directory"),
        (["cup=CUP"], [], "needs two or more tasks"),
        (["cup=CUP", "cup=DRAWER"], [], "names task 'cup' twice"),
        (["CUP", "drawer=DRAWER"], [], "takes TASK=EPISODES_DIR"),
        (["cup=CUP", "drawer=DRAWER"], ["--episodes", "1"], "unknown task 'cup'"),
        (["cup=CUP", "drawer=DRAWER"], ["--set", "adapter.rank=4"], "go in --adapter-set"),
        (["cup=CUP", "drawer=DRAWER"], ["--val-episodes", "3"], "must be fewer than the 3 episodes"),
    ],
)
def test_bad_arguments_are_one_clear_error(tmp_path, capsys, demos, extra, message):
    from psi0_ros.cli import main

    for task, text in INSTRUCTIONS.items():
        _task_episodes(tmp_path / task.upper(), text, SEEDS[task])
    out = tmp_path / "tasks.json"
    demos = [d.replace("CUP", str(tmp_path / "CUP")).replace("DRAWER", str(tmp_path / "DRAWER")) for d in demos]
    demos = [d.replace("MISSING", str(tmp_path / "missing")) for d in demos]
    assert main(["ablate", "tasks", "--demos", *demos, *extra, "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "tasks_runs").exists()
