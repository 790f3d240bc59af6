"""Test set-up: 8 simulated CPU devices, so mesh tests run on one machine.

Computations that are not placed explicitly still run on device 0, as on a one-device machine.
"""
import atexit
import fcntl
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA compilation cache for the whole test session, fresh for each session: the processes the
# tests start (the chain's stages, installs, resumes) and the pytest-xdist workers, which inherit
# it, compile the same small programs many times over. Only the process that made it removes it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="spct_jax_tests_xla_cache_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)


import pathlib  # noqa: E402
import site  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def installed_python(tmp_path_factory) -> str:
  """The python of a fresh venv with spct_jax installed from a wheel built from this checkout (a
  regular install: no source tree, configs from the package). The dependencies are the test
  environment's, reached through a .pth file, so nothing is downloaded; this checkout's own
  spct_jax is not importable there."""
  tmp = tmp_path_factory.mktemp("install")
  wheels = tmp / "wheels"
  # setuptools builds in the checkout (build/, *.egg-info): one build at a time (pytest-xdist workers)
  with open(pathlib.Path(tempfile.gettempdir()) / "spct_jax_tests_wheel.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True, text=True, timeout=600)
  venv = tmp / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
  python = venv / "bin" / "python"
  purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           check=True, capture_output=True, text=True).stdout.strip()
  deps = [p for p in site.getsitepackages() if pathlib.Path(p).is_dir()]
  (pathlib.Path(purelib) / "test_deps.pth").write_text("\n".join(deps) + "\n")
  wheel = next(wheels.glob("spct_jax-*.whl"))
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", purelib, str(wheel)],
                 check=True, capture_output=True, text=True, timeout=600)
  where = subprocess.run([str(python), "-c", "import spct_jax; print(spct_jax.__file__)"], cwd=tmp,
                         check=True, capture_output=True, text=True).stdout.strip()
  assert where.startswith(purelib), where  # the wheel's copy, not this checkout
  shutil.rmtree(wheels)
  return str(python)
