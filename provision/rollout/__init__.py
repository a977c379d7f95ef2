"""Rollouts: reinstall a set of devices in waves with canaries, gates and resume (docs/rollout.md)."""
