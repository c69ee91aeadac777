"""The jobs the `psi0` commands start: scripted demonstrations (`psi0 sim demos`), closed-loop
evaluation (`psi0 eval`), the main job (`psi0 demo`) and its report.

Part of the command layer (docs/architecture.md): they import the library at module level and
the nodes (and rclpy) only inside the entry points that run in an episode's own process
(psi0_ros.jobs.child), so every module here imports without ROS 2.
"""
