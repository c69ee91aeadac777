"""The Psi0 policy, ROS-free: System-2 features (Qwen3-VL), the System-1 MM-DiT flow-matching
action expert, real-time chunking, and the transforms and checkpoints they travel with.

Modules, from the tensors up:
  config.py      frozen dataclasses, named presets, and STAGE_RECIPES: what a checkpoint's numbers mean
  image_prep.py  camera frame -> Qwen3-VL pixel patches and prompt, as Psi0 prepares them
  vlm.py         Qwen3-VL backbone: image + instruction -> last hidden state + attention mask
  mmdit.py       the MM-DiT action expert (nn.Module: tensors in, velocity out)
  flow.py        flow matching: the one training loss, Euler sampler, training-time RTC prefixes
  rtc.py         inference-time RTC (guided inpainting) and its soft prefix weights
  sampling.py    one chunk sampler per RTC mode, registered by name (none, training, guidance),
                 and the config-vs-sampler checks (check_policy_config)
  transforms.py  normalisation statistics and the transform list a PolicyConfig declares
                 (the vector layout itself: psi0_ros.layout)
  checkpoint.py  self-describing checkpoint directories, import of reference Psi0 weights
  interface.py   Policy: from_checkpoint (the one factory), infer(observation, prefix=None) -> chunk,
                 loss (training's), over one transform list

Everything here imports torch lazily enough that `psi0 --help` stays fast: only modules that
need torch import it, and nothing imports rclpy.
"""
