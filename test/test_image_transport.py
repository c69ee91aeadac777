"""The camera image across the two-machine link: the deploy graph puts the JPEG transport on the
robot and policy roles and keeps the raw Image on one machine; `psi0 bench link`'s image figure
is the size of the real serialised messages; compressed_to_rgb decodes what encode_jpeg writes
and names the format of data that does not decode. (The nodes themselves: test_camera_node.py
and test_vlm_node.py, in real processes.)"""

from __future__ import annotations

import numpy as np
import pytest

from psi0_ros.deploy_graph import deploy_nodes


def _params(backend: str, role: str, camera_source: str = "") -> dict[str, dict]:
    return {s.name: s.params for s in deploy_nodes(backend, "ckpt", camera_source=camera_source, role=role)}


def test_the_roles_put_jpeg_on_the_link_and_keep_raw_on_one_machine():
    for backend in ("sim", "unitree"):
        assert _params(backend, "policy")["vlm_node"]["image_transport"] == "compressed"
        assert _params(backend, "all")["vlm_node"]["image_transport"] == "raw"
    unitree = _params("unitree", "robot")["camera_node"]  # the robot's camera: raw + JPEG
    assert unitree["publish_compressed"] is True and unitree["publish_raw"] is True
    assert _params("unitree", "all")["camera_node"]["publish_compressed"] is False
    sim = _params("sim", "robot")  # the sim bridge renders; camera_node only compresses its frames
    camera = sim["camera_node"]
    assert camera["source"] == "topic:camera/ego/image_raw" and camera["publish_raw"] is False
    assert camera["publish_compressed"] is True and camera["jpeg_quality"] == 90
    assert (camera["width"], camera["height"]) == (
        sim["robot_bridge_node"]["sim.camera_width"],
        sim["robot_bridge_node"]["sim.camera_height"],
    )
    assert sim["robot_bridge_node"].get("sim.camera_mode") != "off"
    assert "camera_node" not in _params("sim", "all")  # one machine: the bridge's raw image only
    video = _params("sim", "robot", camera_source="clip.mp4")  # a camera source replaces the sim's
    assert video["robot_bridge_node"]["sim.camera_mode"] == "off"
    assert video["camera_node"]["source"] == "clip.mp4" and video["camera_node"]["publish_compressed"] is True


def test_image_bytes_per_s_is_the_serialised_messages_at_the_camera_rate():
    pytest.importorskip("rclpy")
    from psi0_ros.bench.link import image_bytes_per_s

    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, np.full_like(x, 90)], -1).astype(np.uint8)
    result = image_bytes_per_s(rgb, rate_hz=30.0, jpeg_quality=90)
    sizes = result["message_bytes"]
    assert 64 * 48 * 3 < sizes["raw"] < 64 * 48 * 3 + 200  # the pixels plus header, encoding, step
    assert sizes["compressed"] < sizes["raw"] / 4
    assert result["image_bytes_per_s"] == {"raw": sizes["raw"] * 30.0, "compressed": sizes["compressed"] * 30.0}


def test_compressed_to_rgb_decodes_jpeg_and_png_and_names_bad_data():
    import io
    from types import SimpleNamespace

    from PIL import Image

    from psi0_ros.data.jpeg import encode_jpeg
    from psi0_ros.image import compressed_to_rgb, compressed_topic

    assert compressed_topic("/camera/ego/image_raw") == "/camera/ego/image_raw/compressed"
    rgb = np.full((24, 32, 3), (200, 100, 50), np.uint8)
    jpeg = compressed_to_rgb(SimpleNamespace(format="jpeg", data=encode_jpeg(rgb, 90)))
    assert jpeg.shape == rgb.shape and np.abs(jpeg.astype(int) - rgb).max() <= 3
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    assert np.array_equal(compressed_to_rgb(SimpleNamespace(format="png", data=buffer.getvalue())), rgb)
    for data in (encode_jpeg(rgb, 90)[:100], b"\xff\xd8 garbage", b"", b"not an image"):
        with pytest.raises(ValueError, match="undecodable 'jpeg' image"):
            compressed_to_rgb(SimpleNamespace(format="jpeg", data=data))
