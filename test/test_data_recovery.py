"""A recording that dies (issue 10): the bag writer behind `psi0 record` commits as it goes, so a
recorder killed with SIGKILL or stopped by a full disk keeps every complete episode, in both
storage formats; `psi0 convert` / `psi0 inspect` recover them and say which episode was cut short.
`psi0 convert` itself stops promptly on Ctrl-C and reports a file-size limit plainly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers.independent_bags import read_messages

from psi0_ros.data.config import ConvertConfig
from psi0_ros.data.convert import convert_bags
from psi0_ros.data.synthetic import StreamSpec, SyntheticBag, SyntheticEpisode, write_synthetic_bag
from psi0_ros.data.validate import inspect_paths

TEST_DIR = Path(__file__).resolve().parent
# 160x120 raw frames (57.6 kB at 30 Hz) make the message bytes dominate the storage overhead, so
# a file-size limit falls at a known time of the recording.
SPEC = SyntheticBag(
    duration_s=3.6,
    episodes=(SyntheticEpisode(0.3, 1.0, task="first"), SyntheticEpisode(2.0, 3.0, task="second")),
    width=160,
    height=120,
    joint_states=StreamSpec(100.0),
    imu=StreamSpec(100.0),
)
KEYS = ("timestamps", "action", "observations/state", "observations/joint_positions")

# Replays the messages in real time through BagRecorder (what `psi0 record` runs), up to
# stop_at_s of the recording, then waits to be killed; with a file-size limit it reports the
# recorder's error instead.
RECORDER = textwrap.dedent(
    """
    import resource, signal, sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from helpers.independent_bags import read_messages
    from psi0_ros.data.recorder import BagRecorder, RecorderError
    source, bag, storage, limit, stop_at_s = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), float(sys.argv[6])
    messages = read_messages(Path(source))
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    recorder = BagRecorder(Path(bag), storage=storage).open()
    for m in messages:
        recorder.add_topic(m.topic, m.msgtype)
    t0, wall0 = messages[0].log_time_ns, time.monotonic()
    for m in messages:
        at = (m.log_time_ns - t0) / 1e9
        if at > stop_at_s:
            break
        time.sleep(max(0.0, wall0 + at - time.monotonic()))
        recorder.write(m.topic, m.data, m.log_time_ns)
    if limit:
        try:
            recorder.close()
        except RecorderError as err:
            print("RECORDER ERROR", err, flush=True)
            sys.exit(3)
        sys.exit(0)
    time.sleep(1.5)  # longer than COMMIT_PERIOD_S: what was written so far is committed
    print("ready", flush=True)
    time.sleep(60)
    """
)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("recovery")
    write_synthetic_bag(root / "rec", SPEC)
    summary = convert_bags([root / "rec"], root / "reference", ConvertConfig(), workers=1)
    assert summary.ok and summary.counts["ok"] == 2
    return root / "rec", root / "reference"


def _record(source: Path, bag: Path, storage: str, limit: int, stop_at_s: float) -> subprocess.Popen:
    args = [sys.executable, "-c", RECORDER, str(TEST_DIR), str(source), str(bag), storage, str(limit), str(stop_at_s)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _assert_first_episode_recovered(bag: Path, reference: Path, out: Path) -> dict:
    summary = convert_bags([bag], out, ConvertConfig(), workers=1)
    by_index = {r.episode_index: r for r in summary.episodes}
    assert by_index[0].status == "ok", summary.to_dict()
    name = f"{bag.name}_episode_000000.hdf5"
    with h5py.File(out / name) as got, h5py.File(reference / "rec_episode_000000.hdf5") as want:
        for key in KEYS:
            assert np.array_equal(got[key][()], want[key][()]), key
    assert [p.name for p in out.iterdir()] == [name]
    return by_index


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_sigkilled_recording_keeps_complete_episodes(source, tmp_path, storage):
    rec, reference = source
    bag = tmp_path / "killed"
    child = _record(rec, bag, storage, 0, 2.5)  # killed halfway through episode 1
    try:
        line = child.stdout.readline()
        assert line.strip() == "ready", child.stderr.read()
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert not (bag / "metadata.yaml").exists()  # the recorder never got to write it
    by_index = _assert_first_episode_recovered(bag, reference, tmp_path / "out")
    assert by_index[1].status == "error" and "episode 1 was cut short" in by_index[1].error
    report = inspect_paths([bag])[0]
    assert report.kind == "bag" and any("episode 1 was cut short" in e for e in report.errors)
    assert [e["index"] for e in report.summary["episodes"]] == [0]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_disk_full_recording_keeps_complete_episodes(source, tmp_path, storage):
    rec, reference = source
    messages = read_messages(rec)
    t0 = messages[0].log_time_ns
    # The limit falls about 2.6 s into the recording: after the commit near 2 s that holds all of
    # episode 0, in the middle of episode 1.
    limit = sum(len(m.data) for m in messages if m.log_time_ns - t0 < 2_600_000_000)
    bag = tmp_path / "full"
    child = _record(rec, bag, storage, limit, 10.0)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 3, out + err
    # The cause as the storage reports it: EFBIG ("File too large") from mcap's write, sqlite's
    # "disk I/O error" for the same failed write.
    assert "RECORDER ERROR writing bag" in out and ("File too large" in out or "disk I/O error" in out), out
    by_index = _assert_first_episode_recovered(bag, reference, tmp_path / "out")
    if 1 in by_index:  # its START made it to disk before the limit: it is named as cut short
        assert by_index[1].status == "error" and "cut short" in by_index[1].error


@pytest.fixture(scope="module")
def many_episodes(tmp_path_factory) -> Path:
    bag = tmp_path_factory.mktemp("many") / "many"
    episodes = tuple(SyntheticEpisode(0.2 + 1.2 * i, 1.2 + 1.2 * i, task=f"task {i}") for i in range(12))
    write_synthetic_bag(bag, SyntheticBag(duration_s=14.8, episodes=episodes, width=320, height=240))
    return bag


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_stops_convert_with_a_summary_and_no_partial_files(many_episodes, tmp_path, jobs):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "psi0_ros.cli", "convert", str(many_episodes), "-o", str(out), "-j", jobs]
    child = subprocess.Popen([*args, "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while child.poll() is None and not (out.is_dir() and any(out.glob("*.hdf5"))):
            time.sleep(0.01)
        child.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        stdout, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    # 130, or ended by the SIGINT itself after its summary (seen once in a full run): a shell reports
    # both as $? = 130, the code of a command stopped by Ctrl-C
    assert child.returncode in (130, -signal.SIGINT), stdout + stderr
    assert "Traceback" not in stderr, stderr
    assert "interrupted:" in stdout and "not converted (interrupted)" in stdout
    files = sorted(p.name for p in out.iterdir())
    assert files and all(name.endswith(".hdf5") and not name.startswith(".") for name in files)  # no temporaries
    assert len(files) < 12
    converted = [line for line in stdout.splitlines() if line.startswith("ok ")]
    assert len(converted) == len(files)  # the summary lists exactly what finished
    assert all(report.valid for report in inspect_paths([out])), [r.to_dict() for r in inspect_paths([out])]


def test_a_file_size_limit_is_reported_in_plain_words(source, tmp_path):
    rec, _ = source

    def limit() -> None:  # the default SIGXFSZ disposition: Python itself turns it into EFBIG
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "psi0_ros.cli", "convert", str(rec), "-o", str(out), "-j", "2", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit,
    )
    assert result.returncode == 1, result.stdout + result.stderr  # not a signal (no crash)
    errors = [line for line in result.stdout.splitlines() if line.startswith("error")]
    assert len(errors) == 2 and all("File too large" in e and "file-size limit" in e for e in errors), errors
    assert "RuntimeError" not in result.stdout and not any(out.iterdir())
