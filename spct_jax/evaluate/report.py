"""Reporting of evaluation results: Markdown tables and the voting@k plot.

    print(markdown_table(results, curve))      # results: nested dicts of numbers (metrics.py)
    plot_curve(curve, "curve.png", {"greedy": 0.61})
"""
from __future__ import annotations

import math
import numbers
from typing import Mapping

import numpy as np

from etils import epath

from spct_jax import extras
from spct_jax.evaluate.metrics import Curve



def _fmt(v) -> str:
  if v is None or (isinstance(v, float) and math.isnan(v)):
    return "n/a"
  if isinstance(v, (bool, np.bool_)):
    return str(bool(v))
  if isinstance(v, numbers.Integral):
    return str(int(v))
  if isinstance(v, numbers.Real):
    return f"{float(v):.4f}"
  if isinstance(v, (list, tuple)):
    return ", ".join(_fmt(x) for x in v) if v else "none"
  return str(v)


def _rows(d: Mapping, prefix: str = "") -> list[tuple[str, str]]:
  rows = []
  for key, v in d.items():
    key = str(key)
    if key.endswith("_ci") and key[:-3] in d:
      continue
    name = f"{prefix}{key or '(empty)'}"
    if isinstance(v, Mapping):
      rows += _rows(v, name + ".")
      continue
    text = _fmt(v)
    ci = d.get(key + "_ci")
    if ci is not None and v is not None:
      text += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
    rows.append((name, text))
  return rows


def markdown_table(results: Mapping, curve: Curve | Mapping | None = None) -> str:
  """Markdown text: a `| metric | value |` table of results (nested dicts flattened with '.',
  an empty key shown as "(empty)", a key "x_ci" = [lo, hi] shown as "value [lo, hi]" on x's
  row, floats with 4 decimals, None as n/a), then, with a curve (a Curve or its as_dict), a
  voting@k table: one row per k, one column per method, "acc [lo, hi]", and the skipped ks.
  Empty results with a curve give the voting@k table alone."""
  lines = []
  if results or curve is None:
    lines += ["| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {text} |" for name, text in _rows(results)]
  if curve is not None:
    if not isinstance(curve, Curve):
      curve = Curve.from_dict(curve)
    methods = list(curve.accuracy)
    lines += ["", f"voting@k ({curve.n_items} items, {curve.n_draws} draws per k, "
                  f"{'ties wrong' if curve.strict else 'ties at random'})", "",
              "| k | " + " | ".join(methods) + " |", "| --- |" + " --- |" * len(methods)]
    for j, k in enumerate(curve.ks):
      cells = [f"{_fmt(curve.accuracy[m][j])} [{_fmt(curve.ci[m][j][0])}, {_fmt(curve.ci[m][j][1])}]"
               for m in methods]
      lines.append(f"| {k} | " + " | ".join(cells) + " |")
    if curve.skipped:
      lines += ["", f"skipped k (above the smallest pool): {_fmt(list(curve.skipped))}"]
  return "\n".join(lines) + "\n"


def _pct(v) -> str:
  return "n/a" if v is None else f"{100 * v:.1f}"


def comparison_table(results: Mapping) -> str:
  """Markdown: one row per evaluated model (greedy and sum / meta-RM voting accuracy at every k,
  in %, with the greedy CI; ties wrong), a second row with ties broken at random (the paper's
  rule) where the model has one, then every paired difference with its 95% interval, in points."""
  models = results.get("models", {})
  if not models:
    return ""
  ks = sorted({int(k) for m in models.values() for k in m.get("sum", {})})
  decisive = any("decisive_first" in m for m in models.values())  # the principled world's models
  head = ["model", "greedy [95% CI]"] + [f"sum@{k}" for k in ks] + [f"meta@{k}" for k in ks]
  head += ["decisive principle first (greedy / pool)", "reading / scores follow analysis (greedy)"] if decisive else []
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for name, m in models.items():
    for suffix, label in (("", name), ("_ties_random", f"{name}, ties at random")):
      if f"greedy{suffix}" not in m:
        continue
      ci = m.get(f"greedy{suffix}_ci")
      cells = [label, _pct(m.get(f"greedy{suffix}")) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci else "")]
      cells += [_pct(m.get(f"sum{suffix}", {}).get(str(k))) for k in ks]
      cells += [_pct(m.get(f"meta{suffix}", {}).get(str(k))) for k in ks]
      cells += [f"{_pct(m.get('decisive_first'))} / {_pct(m.get('decisive_first_pool'))}",
                f"{_pct(m.get('reading'))} / {_pct(m.get('scores_follow_analysis'))}"] if decisive else []
      lines.append("| " + " | ".join(cells) + " |")
  diffs = results.get("differences", {})
  if diffs:
    lines += ["", "| paired difference (points) | diff | 95% CI | items |", "|---|---|---|---|"]
    for label, d in diffs.items():
      lines.append(f"| {label} | {100 * d['diff']:+.1f} | [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}] | {d['n']} |")
  return "\n".join(lines) + "\n"


def plot_curve(curve: Curve | Mapping, path: str, extra_lines: Mapping[str, float] | None = None,
               title: str | None = None) -> None:
  """Writes a PNG of accuracy against k (log2 x axis): one line per method with its CI band,
  and a dashed horizontal line per extra_lines entry (e.g. {"greedy": 0.61, "scalar RM": 0.55}).
  Uses matplotlib's Agg canvas directly (no pyplot, no global backend change)."""
  FigureCanvasAgg = extras.require("matplotlib.backends.backend_agg", "plots", "The voting@k plot").FigureCanvasAgg
  from matplotlib.figure import Figure

  if not isinstance(curve, Curve):
    curve = Curve.from_dict(curve)
  if not curve.ks:
    raise ValueError(f"plot_curve: the curve has no k (skipped: {list(curve.skipped)})")
  fig = Figure(figsize=(6, 4), dpi=120)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  ks = np.asarray(curve.ks)
  for m, acc in curve.accuracy.items():
    line, = ax.plot(ks, acc, marker="o", label=m)
    lo, hi = np.asarray(curve.ci[m], float).T
    ax.fill_between(ks, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
  for j, (name, y) in enumerate((extra_lines or {}).items()):
    ax.axhline(float(y), linestyle="--", color=f"C{len(curve.accuracy) + j}", label=name)
  ax.set_xscale("log", base=2)
  ax.set_xticks(ks, [str(k) for k in ks])
  ax.set_xlabel("k (sampled critiques per item)")
  ax.set_ylabel("accuracy" + ("" if curve.strict else " (ties at random)"))
  ax.set_title(title or f"voting@k ({curve.n_items} items)")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  with epath.Path(path).open("wb") as f:
    fig.savefig(f, format="png")
