"""Offline three-stage training of Psi0 (imports psi0_ros; psi0_ros never imports training)."""
