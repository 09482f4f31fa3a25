"""MetricsLog: one row per epoch in metrics.jsonl and metrics.csv, each file replaced whole by a rename."""

import csv
import json

from proxyless.infra.metrics import MetricsLog

ROWS = [{"epoch": 1, "train_loss": 2.25, "train_top1": 0.125}, {"epoch": 2, "train_loss": 2.0, "valid_top1": 0.5}]


def read_both(run_dir):
    jsonl = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    with open(run_dir / "metrics.csv", newline="") as handle:
        return jsonl, list(csv.DictReader(handle))


def test_rows_go_to_both_files_whole_with_every_column(tmp_path):
    log = MetricsLog(tmp_path)
    for row in ROWS:
        log.append(row)
    jsonl, table = read_both(tmp_path)
    assert jsonl == ROWS
    assert table == [{"epoch": "1", "train_loss": "2.25", "train_top1": "0.125", "valid_top1": ""},
                     {"epoch": "2", "train_loss": "2.0", "train_top1": "", "valid_top1": "0.5"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "metrics.jsonl"]  # no temporaries left


def test_each_row_replaces_the_files_by_rename_not_in_place(tmp_path):
    """A reader holding the old file keeps a complete old file: the new one is another inode, renamed over it."""
    log = MetricsLog(tmp_path)
    log.append(ROWS[0])
    before = {name: (tmp_path / name).stat().st_ino for name in ("metrics.jsonl", "metrics.csv")}
    with open(tmp_path / "metrics.jsonl") as old_reader:
        log.append(ROWS[1])
        assert [json.loads(line) for line in old_reader.read().splitlines()] == ROWS[:1]
    after = {name: (tmp_path / name).stat().st_ino for name in before}
    assert all(after[name] != before[name] for name in before)
    assert read_both(tmp_path)[0] == ROWS


def test_a_resume_drops_later_epochs_and_the_temporaries_of_a_killed_write(tmp_path):
    log = MetricsLog(tmp_path)
    for row in ROWS:
        log.append(row)
    (tmp_path / ".metrics.csv.abc123.tmp").write_text("epoch,train_lo")  # a write the kill cut short
    resumed = MetricsLog(tmp_path, completed_epochs=1)
    assert resumed.rows == ROWS[:1] and read_both(tmp_path)[0] == ROWS[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "metrics.jsonl"]
