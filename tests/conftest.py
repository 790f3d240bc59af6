"""Test set-up: 8 simulated CPU devices, so mesh tests run on one machine.

Computations that are not placed explicitly still run on device 0, as on a one-device machine.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
