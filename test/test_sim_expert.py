"""The basket task check on hand-placed objects, the grasp assist, the scripted expert, and
`psi0 sim demos` -> `psi0 convert` -> `psi0 inspect` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import psi0_ros.sim  # noqa: F401  (sets MUJOCO_GL=egl before mujoco is imported)
from psi0_ros import g1
from psi0_ros.control.command import JointCommand

mujoco = pytest.importorskip("mujoco")

from psi0_ros.sim.demo import hand_closure  # noqa: E402
from psi0_ros.sim.demos import bag_name, episode_seed, replay_episode, run_expert_episode  # noqa: E402
from psi0_ros.sim.scene import BASKET_HALF, BASKET_WALL, CAN_HALF_HEIGHT, TABLE_HEIGHT  # noqa: E402
from psi0_ros.sim.simulator import G1Sim, SimConfig  # noqa: E402
from psi0_ros.sim.tasks import get_task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _place(sim: G1Sim, name: str, local: tuple[float, float, float], tilt: bool = False) -> None:
    """Put an object at `local` (m) in the basket's frame (upright, or lying on its side) and update poses."""
    basket, _ = sim.body_pose("basket")
    rotation = sim.data.xmat[sim.model.body("basket").id].reshape(3, 3)
    adr = sim.model.joint(f"{name}_joint").qposadr[0]
    sim.data.qpos[adr : adr + 3] = basket + rotation @ np.asarray(local)
    sim.data.qpos[adr + 3 : adr + 7] = (np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0) if tilt else (1, 0, 0, 0)
    sim.data.qvel[:] = 0.0
    mujoco.mj_forward(sim.model, sim.data)


FLOOR = BASKET_WALL  # basket frame: the floor's centre plane; the inner floor surface is 2 * BASKET_WALL up
UPRIGHT = 2 * BASKET_WALL + CAN_HALF_HEIGHT  # can centre standing on the basket floor


@pytest.mark.parametrize(
    ("where", "local", "tilt", "expected"),
    [
        ("standing in the basket", (0.0, 0.0, UPRIGHT), False, True),
        ("lying in a corner of the basket", (BASKET_HALF[0] - 0.04, BASKET_HALF[1] - 0.04, 0.043), True, True),
        ("held 20 cm above the basket", (0.0, 0.0, UPRIGHT + 0.2), False, False),
        ("on the table beside the basket", (0.0, BASKET_HALF[1] + 0.06, UPRIGHT - 2 * BASKET_WALL), False, False),
        ("on the rim, outside the inner box", (BASKET_HALF[0] + 0.02, 0.0, UPRIGHT + 0.07), False, False),
        ("on the floor under the table", (0.0, 0.0, -TABLE_HEIGHT + CAN_HALF_HEIGHT), False, False),
    ],
)
def test_basket_task_check_on_hand_placed_objects(where, local, tilt, expected):
    sim = G1Sim(SimConfig(scene="tabletop", seed=5))
    _place(sim, "can", local, tilt)
    assert get_task("can_to_basket").check(sim) is expected, where
    assert get_task("cube_to_basket").check(sim) is False  # the cube stayed where the layout put it


def _closed_hand_command(side: str) -> JointCommand:
    q = g1.table("default").copy()
    index = {name: i for i, name in enumerate(g1.ALL_JOINTS)}
    for name, value in hand_closure(side, 1.0).items():
        q[index[name]] = value
    return JointCommand.position(q, g1.table("kp"), g1.table("kd"))


def test_grasp_assist_is_off_by_default_and_needs_contact():
    assert G1Sim(SimConfig(seed=0)).grasp is None
    sim = G1Sim(SimConfig(seed=0, grasp_assist=True))
    sim.apply(_closed_hand_command("right"))
    sim.step(400)  # the hand closes in the air, touching nothing
    assert sim.grasp.closure(sim.data, "right") > 0.5
    assert sim.grasp.events == 0 and sim.grasp.held(sim.data, "right") is None
    assert not sim.data.eq_active.any()


def test_expert_puts_the_can_in_the_basket_through_the_bridge():
    outcome = run_expert_episode(seed=3)  # the fingers alone hold the can
    assert outcome.expert_finished and outcome.success, outcome
    assert outcome.grasps == 0 and outcome.reach_error_m < 0.005
    assert outcome.sim_time_s < 30.0


def test_a_plan_three_centimetres_off_misses_the_can():
    """What a policy that cannot see the can precisely faces: the same layout as the test above,
    planned for the can 3 cm nearer than it is, ends without the can in the basket."""
    outcome = run_expert_episode(seed=3, plan_offset=(-0.03, 0.0))
    assert outcome.expert_finished and not outcome.success, outcome


def test_grasp_assist_welds_the_can_the_expert_closes_its_hand_on():
    outcome = run_expert_episode(seed=5, grasp_assist=True)
    assert outcome.expert_finished and outcome.success, outcome
    assert outcome.grasps == 1  # one weld: made at the grasp, released over the basket


def test_demo_seeds_and_bag_names():
    assert [episode_seed(10, i) for i in range(3)] == [10, 11, 12]
    assert bag_name(2, 12) == "demo_0002_seed_12"


def _psi0(*args: str, timeout: float) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "psi0_ros.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_psi0_sim_demos_refuses_a_bad_speed_before_recording(tmp_path):
    pytest.importorskip("rclpy")
    for speed in ("0", "-1", "nan"):
        result = _psi0(
            "sim", "demos", "--episodes", "1", "--out", str(tmp_path / "bags"), "--speed", speed, timeout=120
        )
        assert result.returncode == 2, result.stderr
        assert "--speed must be a finite number > 0" in result.stderr
        assert not (tmp_path / "bags").exists()  # nothing started


def test_psi0_sim_demos_records_bags_that_convert_to_successful_episodes(tmp_path):
    pytest.importorskip("rclpy")
    bags, episodes = tmp_path / "bags", tmp_path / "episodes"
    result = _psi0("sim", "demos", "--episodes", "2", "--out", str(bags), "--seed", "7", timeout=1500)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((bags / "demos.json").read_text())
    assert [e["seed"] for e in summary["episodes"]] == [7, 8]
    assert summary["success_rate"] == 1.0 and summary["errors"] == 0 and summary["grasp_assist"] is False
    assert sorted(p.name for p in bags.iterdir() if p.is_dir()) == [bag_name(0, 7), bag_name(1, 8)]

    report = tmp_path / "convert.json"
    result = _psi0("convert", str(bags), "-o", str(episodes), "--no-progress", "--json", str(report), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    converted = json.loads(report.read_text())
    ok = [e for e in converted["episodes"] if e["status"] == "ok"]
    assert len(ok) == 2 and converted["counts"]["ok"] == 2

    inspected = tmp_path / "inspect.json"
    result = _psi0("inspect", str(episodes), "--json", str(inspected), timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reports = json.loads(inspected.read_text())
    assert len(reports) == 2 and all(r["valid"] for r in reports)
    for r in reports:
        assert r["summary"]["outcome"] == "success"
        assert r["summary"]["task"] == get_task("can_to_basket").instruction
        assert r["summary"]["frames"] > 30 * 10  # > 10 s of 30 Hz control ticks
    # The demo graph ran on the sim's clock: every stream aligned on its header stamps, which are
    # seconds of simulated time (not the wall epoch), and the 30 Hz grid spans the simulated episode.
    from psi0_ros.data.hdf5 import read_episode

    for path in sorted(episodes.glob("*.hdf5")):
        episode = read_episode(path, images=False)
        assert set(episode.attrs["alignment"]["clocks"].values()) == {"header"}, episode.attrs["alignment"]
        assert 0 < episode.attrs["start_time_ns"] < 120 * 10**9, episode.attrs["start_time_ns"]
        seed = int(path.name.split("_seed_")[1].split("_")[0])
        simulated = next(e["sim_time_s"] for e in summary["episodes"] if e["seed"] == seed)
        assert episode.num_frames / 30.0 < simulated < episode.num_frames / 30.0 + 3.0, (episode.num_frames, simulated)
        # what was recorded is what was done: the converted actions alone, replayed open loop at
        # 30 Hz of sim time on the same layout, put the can in the basket again
        replayed = replay_episode(path, seed)
        assert replayed["success"], (path.name, replayed)
