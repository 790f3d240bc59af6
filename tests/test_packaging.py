"""pyproject.toml ships every folder of the package: each folder under spct_jax/ that holds
files is listed in [tool.setuptools] packages (setuptools warns about, and may stop shipping,
importable folders missing from the list), and its data files are matched by package-data."""
import fnmatch
import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_folder_with_files_is_a_listed_package_and_its_files_ship():
  tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
  packages, data = set(tool["packages"]), tool["package-data"]
  for folder in sorted(p for p in (ROOT / "spct_jax").rglob("*") if p.is_dir() and p.name != "__pycache__"):
    files = [f for f in folder.iterdir() if f.is_file() and f.suffix != ".pyc"]
    if not files:
      continue
    name = ".".join(folder.relative_to(ROOT).parts)
    assert name in packages, f"{folder.relative_to(ROOT)} holds files but {name!r} is not in pyproject's packages"
    for f in files:
      if f.suffix != ".py":
        assert any(fnmatch.fnmatch(f.name, pat) for pat in data.get(name, [])), \
            f"{f.relative_to(ROOT)} is not matched by package-data[{name!r}]"
