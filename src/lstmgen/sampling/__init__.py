"""Sampling: SampleConfig, the logits processors, the one-token step kernels and the token stream."""
