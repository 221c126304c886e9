"""Training: the config, the per-step loop, its schedule, stop policy, recorder and run state, presets and DDP."""
