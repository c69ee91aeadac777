"""A MuJoCo G1 (29-DoF body + two Dex3-1 hands) for running the stack without a robot (ROS-free).

model.py writes the robot as MJCF from the joint table (psi0_ros.g1) and approximate link
geometry; scene.py adds tabletop scenes with randomised objects; tasks.py checks success;
kinematic.py is the lower-body mode that follows the 8-D command without a walking controller;
simulator.py steps it all and applies per-joint PD commands like the real motors; camera.py
renders the egocentric head camera offscreen (MUJOCO_GL=egl); grasp.py is the labelled grasp
assist; expert.py a scripted, privileged expert for the basket tasks and demos.py runs it (the
recording graph is psi0_ros.jobs.demos). See docs/sim.md.
"""

import os

# Render offscreen through EGL unless the user chose a GL backend; MuJoCo reads this when it is
# first imported, so it is set here, before any psi0_ros.sim module imports mujoco.
os.environ.setdefault("MUJOCO_GL", "egl")
