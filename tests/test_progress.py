"""progress.bar without a terminal: one line per interval and at the end, counts and plural units."""
from spct_jax import progress


def test_plain_progress_lines_count_and_pluralise(capsys):
  assert list(progress.bar(range(3), desc="score", unit="batch", every_s=1e9)) == [0, 1, 2]
  assert list(progress.bar(range(2), desc="eval pool", unit="call", every_s=1e9)) == [0, 1]
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith("[score] 3/3 batches, ") and lines[1].startswith("[eval pool] 2/2 calls, ")
