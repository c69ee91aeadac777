"""The data pipeline: teleop bags in, time-aligned episode files out (shared/DESIGN.md §5, docs/data.md).

ROS-free (reads and writes rosbag2 with the `rosbags` library), so conversion runs on a machine
without ROS 2. Modules:
- typestore: rosbags Typestore with the project's own msg/*.msg plus sensor_msgs & co.
- config: RecordConfig / ConvertConfig, loaded from config/record.yaml
- bags: finding bags (mcap, sqlite3, split, directories of bags) and decoding their messages
- cdr: fast decoding of the high-rate JointState / Imu messages (checked against rosbags)
- episodes: the recorder's episode state machine and cutting a bag's EpisodeEvents into episodes
- streams: message -> vector mapping (43 joints, 36-D action, 32-D state padded to 36)
- align: the alignment rules on the control grid (hold, interpolate, nearest)
- episode_schema: the episode file's layout (keys, shapes, dtypes, attributes) and EpisodeData
- hdf5: the episode file's writer (temporary name, renamed when complete) and reader
- bag_schema: the topics the converter reads and the message types it expects on them
- clocks: which clock (header or receive) a stream is aligned on; read margins around an episode
- planning: bags -> episode jobs (EpisodeEvents cut into spans), per-episode results
- jpeg: camera frames -> JPEG bytes
- aligners: one aligner per stream kind (joint states, commands, IMU, cameras)
- extract: one episode out of an open bag, read once and assembled from the aligners
- jobs: one episode start to finish, the process pool, the conversion summary
- convert: the two orchestrations (HDF5 episodes, LeRobot dataset)
- lerobot: LeRobot v2.1 export (parquet + mp4 + meta)
- validate: what `psi0 inspect` checks in episode files, LeRobot datasets and bags
- recorder: a rosbag2 writer fed with serialized messages (what `psi0 record` runs without ros2 bag)
- synthetic: generated teleop bags for tests and `psi0 bench convert`
"""
