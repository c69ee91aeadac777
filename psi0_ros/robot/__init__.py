"""The robot side of the bridge (ROS-free): one backend interface, a simulated and a Unitree G1.

backend.py defines RobotBackend and RobotState; sim_backend.py runs psi0_ros.sim behind it;
unitree_backend.py talks to a real G1 over DDS (rt/lowcmd, rt/lowstate, rt/dex3/*) with the
unitree_hg IDL types in unitree_idl.py and the cyclonedds package (or unitree_sdk2py's, on request); crc.py is Unitree's CRC32. bridge.py runs the control loop: newest
targets -> safety layer -> backend, at a fixed rate, with timing statistics.
"""
