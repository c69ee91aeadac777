"""Thin rclpy nodes over the ROS-free library; the only part of psi0_ros that imports rclpy."""
