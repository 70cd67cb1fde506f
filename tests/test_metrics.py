"""MetricsWriter: the CSV files can be followed while training runs."""

from __future__ import annotations

import csv

import ppolab.metrics as metrics
from ppolab.algos.ppo import PPOUpdate
from ppolab.metrics import MetricsWriter, metric_columns


def rows_on_disk(path) -> list[dict[str, str]]:
    with path.open(newline="") as f:  # a second handle: sees only what was flushed
        return list(csv.DictReader(f))


def test_rows_reach_the_disk_at_the_first_update_and_then_every_few_seconds(tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: now[0])
    columns = metric_columns(PPOUpdate.STATS)
    writer = MetricsWriter(tmp_path, columns, tensorboard=False)
    row = dict.fromkeys(columns, 0)
    try:
        writer.update({**row, "update": 1})
        assert [r["update"] for r in rows_on_disk(tmp_path / "metrics.csv")] == ["1"]
        now[0] += 1.0
        writer.update({**row, "update": 2})
        assert [r["update"] for r in rows_on_disk(tmp_path / "metrics.csv")] == ["1"]  # not every row
        now[0] += metrics.FLUSH_SECONDS
        writer.update({**row, "update": 3})
        assert [r["update"] for r in rows_on_disk(tmp_path / "metrics.csv")] == ["1", "2", "3"]
    finally:
        writer.close()
