"""The package's import structure (README, "Map of the package"): imports only point down the
layers below, no two modules import each other (directly or around a loop), the stage files never
import one another, and the generic training core knows nothing of SPCT.

Every import counts, at the top of a module or inside a function."""
import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "spct_jax"

# Bottom first. A module may import modules of its own layer or of any layer below it.
LAYERS = (
    ("base", ("spct_jax.__init__", "spct_jax.example", "spct_jax.mesh", "spct_jax.extras", "spct_jax.paths",
              "spct_jax.progress")),
    ("text", ("spct_jax.tokenizer", "spct_jax.grm")),
    ("model", ("spct_jax.model",)),
    ("data", ("spct_jax.data",)),
    ("inference", ("spct_jax.sampling", "spct_jax.judge", "spct_jax.rm", "spct_jax.evaluate.metrics",
                   "spct_jax.evaluate.report", "spct_jax.evaluate.__init__")),
    ("train core", ("spct_jax.train.__init__", "spct_jax.train.state", "spct_jax.train.step", "spct_jax.train.loop",
                    "spct_jax.train.checkpoint", "spct_jax.train.metrics", "spct_jax.train.sft",
                    "spct_jax.train.rl", "spct_jax.train.scalar")),
    ("stage kit", ("spct_jax.train.stage",)),
    ("stages", ("spct_jax.train.warmup", "spct_jax.train.rft", "spct_jax.train.grpo", "spct_jax.train.meta_rm",
                "spct_jax.train.scalar_rm")),
    ("chain", ("spct_jax.train.chain",)),
    ("programs", ("spct_jax.train.__main__", "spct_jax.evaluate.run", "spct_jax.evaluate.__main__",
                  "spct_jax.api", "spct_jax.score", "spct_jax.export", "spct_jax.plan", "spct_jax.bench")),
)
NO_SIBLINGS = ("stages",)  # each stage imports the kit, never another stage
SPCT = ("spct_jax.grm", "spct_jax.data", "spct_jax.judge", "spct_jax.sampling", "spct_jax.rm",
        "spct_jax.evaluate", "spct_jax.tokenizer", "spct_jax.example")  # what the core must not know


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in PKG.rglob("*.py"):
    rel = path.relative_to(PKG.parent).with_suffix("")
    out[".".join(rel.parts)] = path
  return out


MODULES = _modules()


def _under(module: str, prefix: str) -> bool:
  return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int:
  """The index in LAYERS of the longest prefix that holds `module`."""
  best, where = -1, None
  for i, (_, prefixes) in enumerate(LAYERS):
    for p in prefixes:
      if _under(module, p) and len(p) > best:
        best, where = len(p), i
  if where is None:
    raise AssertionError(f"{module} has no layer: add it to LAYERS in tests/test_layers.py and to the README map")
  return where


def imports(module: str) -> set[str]:
  """The spct_jax modules `module` imports (a package import points at its __init__)."""
  tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
  package = module.rsplit(".", 1)[0] if not module.endswith("__init__") else module[:-len(".__init__")]
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      names |= {base} | {f"{base}.{a.name}" for a in node.names}
  out = set()
  for n in names:
    for cand in (n, f"{n}.__init__"):
      if cand in MODULES and cand != module:
        out.add(cand)
  return out


GRAPH = {m: imports(m) for m in MODULES}
NAMES = [name for name, _ in LAYERS]


def upward(graph: dict[str, set[str]]) -> list[str]:
  """Every import of a module from a layer above its own, named with both layers."""
  return sorted(f"{m} ({NAMES[layer_of(m)]}) imports {t} ({NAMES[layer_of(t)]})"
                for m, ts in graph.items() for t in ts if layer_of(t) > layer_of(m))


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One import cycle as [m, ..., m], or None (depth-first search)."""
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(m):
    state[m] = 1
    stack.append(m)
    for t in sorted(graph.get(m, ())):
      if state.get(t) == 1:
        return stack[stack.index(t):] + [t]
      if t not in state and (found := visit(t)):
        return found
    stack.pop()
    state[m] = 2
    return None

  for m in sorted(graph):
    if m not in state and (found := visit(m)):
      return found
  return None


def within(graph: dict[str, set[str]], layer: str) -> list[str]:
  """Imports between two modules of `layer`."""
  i = NAMES.index(layer)
  return sorted(f"{m} imports {t}" for m, ts in graph.items() for t in ts if layer_of(m) == i == layer_of(t))


def test_every_module_has_a_layer():
  for m in MODULES:
    layer_of(m)
  with pytest.raises(AssertionError, match="has no layer"):
    layer_of("spct_jax.somewhere_new")


def test_imports_point_down():
  bad = upward(GRAPH)
  assert not bad, "imports that point up:\n" + "\n".join(bad)


def test_no_import_cycle():
  found = cycle(GRAPH)
  assert found is None, "import cycle: " + " -> ".join(found)


@pytest.mark.parametrize("layer", NO_SIBLINGS)
def test_stage_files_do_not_import_each_other(layer):
  bad = within(GRAPH, layer)
  assert not bad, "\n".join(bad)


def test_the_training_core_knows_nothing_of_spct():
  core = NAMES.index("train core")
  bad = [f"{m} imports {t}" for m, ts in GRAPH.items() for t in ts
         if layer_of(m) == core and any(_under(t, p) for p in SPCT)]
  assert not bad, "\n".join(bad)


def test_the_checks_name_what_they_find():
  """Planted faults are found, with the offending pair named."""
  graph = {m: set(ts) for m, ts in GRAPH.items()}
  graph["spct_jax.mesh"].add("spct_jax.train.loop")
  assert upward(graph) == ["spct_jax.mesh (base) imports spct_jax.train.loop (train core)"]
  assert cycle(graph) == ["spct_jax.mesh", "spct_jax.train.loop", "spct_jax.mesh"]
  graph = {m: set(ts) for m, ts in GRAPH.items()}
  graph["spct_jax.train.grpo"].add("spct_jax.train.warmup")
  assert within(graph, "stages") == ["spct_jax.train.grpo imports spct_jax.train.warmup"]
  assert "spct_jax.train.stage" in GRAPH["spct_jax.train.grpo"]  # the walk reads real imports
  assert "spct_jax.model.load" in GRAPH["spct_jax.train.chain"]
