"""The data pipeline: teleop bags in, time-aligned episode files out (shared/DESIGN.md §5, docs/data.md).

ROS-free (reads and writes rosbag2 with the `rosbags` library), so conversion runs on a machine
without ROS 2. Modules:
- typestore: rosbags Typestore with the project's own msg/*.msg plus sensor_msgs & co.
- config: RecordConfig / ConvertConfig, loaded from config/record.yaml
- bags: finding bags (mcap, sqlite3, split, directories of bags) and decoding their messages
- cdr: fast decoding of the high-rate JointState / Imu messages (checked against rosbags)
- episodes: the recorder's episode state machine and cutting a bag's EpisodeEvents into episodes
- streams: message -> vector mapping (43 joints, 36-D action, 32-D state padded to 36)
- align: the per-stream alignment rules on the control grid
- hdf5: the episode file schema, writer (temporary name, renamed when complete) and reader
- convert: bag -> episodes orchestration, in parallel, with a JSON summary
- lerobot: LeRobot v2.1 export (parquet + mp4 + meta)
- validate: what `psi0 inspect` checks in episode files, LeRobot datasets and bags
- recorder: a rosbag2 writer fed with serialized messages (what `psi0 record` runs without ros2 bag)
- synthetic: generated teleop bags for tests and `psi0 bench convert`
"""
