"""The Psi0 policy, ROS-free: System-2 features (Qwen3-VL), the System-1 MM-DiT flow-matching
action expert, real-time chunking, and the transforms and checkpoints they travel with.

Modules, from the tensors up:
  config.py      frozen dataclasses and named presets (the full Psi0 expert, a tiny one for tests)
  image_prep.py  camera frame -> Qwen3-VL pixel patches and prompt, as Psi0 prepares them
  vlm.py         Qwen3-VL backbone: image + instruction -> last hidden state + attention mask
  mmdit.py       the MM-DiT action expert (nn.Module: tensors in, velocity out)
  flow.py        flow matching: training loss, Euler sampler, training-time RTC prefixes
  rtc.py         inference-time RTC (guided inpainting) and its soft prefix weights
  sampling.py    one chunk sampler per RTC mode, registered by name (none, training, guidance)
  transforms.py  36-D action / 32->36 state layout, normalisation statistics
  checkpoint.py  self-describing checkpoint directories, import of reference Psi0 weights
  interface.py   Policy.infer(observation, prefix=None) -> chunk, shared by nodes and training

Everything here imports torch lazily enough that `psi0 --help` stays fast: only modules that
need torch import it, and nothing imports rclpy.
"""
