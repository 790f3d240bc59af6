"""The README's promises: its test command is the one CI runs; its runnable commands parse."""
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_blocks():
  text = (ROOT / "README.md").read_text()
  return re.findall(r"```(?:bash|sh) *(runnable)?\n(.*?)```", text, flags=re.S)


def test_readme_starts_with_the_two_commands():
  blocks = _readme_blocks()
  first = blocks[0][1].strip().splitlines()
  assert len(first) >= 2
  assert "pip install" in first[0] and "python -m spct_jax.train" in first[0]
  assert "pip install" in first[1] and "pytest" in first[1]


def test_ci_runs_the_readme_test_command():
  first = _readme_blocks()[0][1].strip().splitlines()
  readme_pytest = first[1].split("&&")[-1].strip()
  ci = (ROOT / ".ci" / "run").read_text()
  assert readme_pytest in ci.splitlines(), f"{readme_pytest!r} is not a line of .ci/run"


def _runnable_commands():
  for runnable, body in _readme_blocks():
    if not runnable:
      continue
    for line in body.replace("\\\n", " ").splitlines():
      line = line.strip()
      if line.startswith("python -m spct_jax."):
        yield line


@pytest.mark.parametrize("command", list(_runnable_commands()))
def test_runnable_readme_commands_parse(command, tmp_path):
  """Each `python -m spct_jax.<tool> ...` marked runnable: the train CLI runs it as written with
  --dry_run (configs load, overrides apply, the chain resolves); other tools answer --help and
  know every flag the command uses."""
  argv = shlex.split(command)
  module = argv[2]
  if module == "spct_jax.train":
    args = [a if not a.startswith("--workdir=") else f"--workdir={tmp_path}" for a in argv[3:]]
    proc = subprocess.run([sys.executable, "-m", module, *args, "--dry_run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[dry run]" in proc.stdout and ("(would run" in proc.stdout or "(would install" in proc.stdout)
    return
  proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
  assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
  assert "Try --helpfull" in proc.stdout  # absl's usage text (absl exits 1 after --help)
  for arg in argv[3:]:
    if arg.startswith("--") and not arg.startswith("--config."):
      flag = arg[2:].split("=", 1)[0]
      assert f"--{flag}" in proc.stdout, f"{module} has no flag --{flag}"


def _package_map() -> str:
  text = (ROOT / "README.md").read_text()
  section = text.split("## Map of the package", 1)[1]
  return section.split("```", 2)[1]


def test_the_package_map_names_every_module_and_only_real_ones():
  block = _package_map()
  named = set(re.findall(r"[\w/]+\.py", block))
  files = {p.relative_to(ROOT / "spct_jax").as_posix() for p in (ROOT / "spct_jax").rglob("*.py")}
  for rel in files:
    if pathlib.PurePosixPath(rel).name == "__init__.py":
      continue
    assert pathlib.PurePosixPath(rel).name in block, f"README package map does not name spct_jax/{rel}"
  basenames = {pathlib.PurePosixPath(f).name for f in files} | {p.name for p in (ROOT / "scripts").glob("*.py")}
  for name in named:
    assert pathlib.PurePosixPath(name).name in basenames, f"README package map names {name}, which does not exist"


def test_the_package_map_lists_the_layers_the_import_test_enforces():
  from test_layers import LAYERS
  lines = _package_map().splitlines()
  for name, _ in LAYERS:
    assert any(line.startswith(f"  {name} ") for line in lines), f"README package map has no layer {name!r}"
