"""tools.generate_pr_reviews: determinism, what the summary says about the file, formats, broken rows,
the CLI, bounded memory, and the seed sample."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools import generate_pr_reviews as gp

ROOT = Path(__file__).resolve().parents[1]
SMALL_BLOCKS = {"block_rows": 1_000}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    opts = {"missing": 0.02, "excel_dates": 0.2, "bad_rows": 0.01, **SMALL_BLOCKS}
    a = gp.generate(tmp_path / "a.csv", 5_500, seed=7, **opts)
    b = gp.generate(tmp_path / "b.csv", 5_500, seed=7, **opts)
    c = gp.generate(tmp_path / "c.csv", 5_500, seed=8, **opts)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()
    assert a == {**b, "path": a["path"]} and c["rows"] == 5_500


@pytest.mark.parametrize("rows", [0, 1, 999, 1_000, 2_345])
def test_the_summary_describes_the_file(tmp_path: Path, rows: int) -> None:
    from tests.support.pr_reviews import read_file

    path = tmp_path / "t.csv"
    summary = gp.generate(path, rows, seed=1, missing=0.05, excel_dates=0.3, **SMALL_BLOCKS)
    lines = path.read_text().split("\n")
    assert lines[0] == "review_time,team,date,merge_time" and lines[-1] == ""
    assert len(lines) == rows + 2 and summary["rows"] == rows and summary["bytes"] == path.stat().st_size
    if rows == 0:
        return
    df = read_file(path.read_bytes())
    assert summary["missing"] == {c: int(df[c].isna().sum()) for c in gp.COLUMNS}
    assert summary["team_counts"] == {t: int((df["team"] == t).sum()) for t in gp.DEFAULT_TEAMS}
    assert df["date"].min() >= __import__("pandas").Timestamp("2023-01-01")
    assert df["date"].max() <= __import__("pandas").Timestamp("2023-03-31")
    assert (df[["review_time", "merge_time"]].dropna() >= 0).all().all()


def test_zeros_for_no_review_and_no_ci_and_skewed_times(tmp_path: Path) -> None:
    from tests.support.pr_reviews import read_file

    path = tmp_path / "t.csv"
    gp.generate(path, 20_000, seed=3, no_review=0.4, no_ci=0.25)
    df = read_file(path.read_bytes())
    assert 0.37 < (df["review_time"] == 0).mean() < 0.43 and 0.22 < (df["merge_time"] == 0).mean() < 0.28
    nonzero = df.loc[df["review_time"] > 0, "review_time"]
    assert nonzero.mean() > 2 * nonzero.median()  # a long tail: the mean well above the median
    per_team = df.groupby("team").size()
    assert per_team.idxmax() == "Application" and per_team.min() > 0


def test_formats(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    gp.generate(path, 100, seed=1, crlf=True, bom=True, final_newline=False, extra_column=True,
                order=["team", "merge_time", "review_time", "date"])
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfteam,merge_time,review_time,date,comment\r\n")
    assert data.count(b"\r\n") == 100 and not data.endswith(b"\n") and b"\n" not in data.replace(b"\r\n", b"")
    gz = tmp_path / "t.csv.gz"
    gp.generate(gz, 100, seed=1, crlf=True, bom=True, final_newline=False, extra_column=True,
                order=["team", "merge_time", "review_time", "date"])
    assert gzip.decompress(gz.read_bytes()) == data
    gp.generate(tmp_path / "again.csv.gz", 100, seed=1, crlf=True, bom=True, final_newline=False, extra_column=True,
                order=["team", "merge_time", "review_time", "date"])
    assert (tmp_path / "again.csv.gz").read_bytes() == gz.read_bytes()


def test_bad_rows_are_each_broken_one_way(tmp_path: Path) -> None:
    import pyarrow as pa

    from chalicelib.csvblock import parse as read_block
    from chalicelib.datasets.pr_reviews import parse

    path = tmp_path / "t.csv"
    summary = gp.generate(path, 5_000, seed=2, bad_rows=0.05)
    block = read_block(path.read_bytes(), list(gp.COLUMNS), skip_header=True)
    parsed = parse(block, None, keep_errors=10_000)
    assert 150 < summary["bad_rows"] < 350
    assert parsed.rejected == summary["bad_rows"] and parsed.table.num_rows == 5_000 - summary["bad_rows"]
    assert {m.split(" ")[0] for _, m in parsed.rejects} == {"review_time", "merge_time", "date"}
    assert isinstance(parsed.table, pa.Table)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    for options in ({"order": ["review_time", "team", "date"]}, {"missing": 1.5}, {"teams": ["a,b"]},
                    {"start": "2023-02-01", "end": "2023-01-01"}):
        with pytest.raises(ValueError):
            gp.generate(tmp_path / "x.csv", 10, **options)


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli.csv"
    assert gp.main([str(out), "--rows", "1234", "--seed", "9", "--teams", "A,B", "--crlf", "--missing", "0.1",
                    "--excel-dates", "0.5", "--bad-rows", "0.01", "--order", "date,team,merge_time,review_time"]) == 0
    gp.generate(tmp_path / "lib.csv", 1234, 9, teams=["A", "B"], crlf=True, missing=0.1, excel_dates=0.5,
                bad_rows=0.01, order=["date", "team", "merge_time", "review_time"])
    assert out.read_bytes() == (tmp_path / "lib.csv").read_bytes()
    helped = subprocess.run([sys.executable, "-m", "tools.generate_pr_reviews", "--help"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    assert "--seed-sample" in helped.stdout and "--excel-dates" in helped.stdout


def test_seed_sample(tmp_path: Path) -> None:
    out = tmp_path / "seed.csv"
    assert gp.main([str(out), "--seed-sample"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "review_time,team,date,merge_time" and len(lines) == 97
    assert out.read_bytes() == (gp.seed_sample(tmp_path / "again.csv") and (tmp_path / "again.csv").read_bytes())


MEMORY_PROBE = """
import json, resource, sys
from tools import generate_pr_reviews as gp
gp.generate(sys.argv[1] + ".warm", 100_000, seed=1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
summary = gp.generate(sys.argv[1], 2_000_000, seed=1, missing=0.01, excel_dates=0.1)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": summary["rows"], "bytes": summary["bytes"], "delta_kib": after - before}))
"""


def test_memory_is_bounded_for_2m_rows(tmp_path: Path) -> None:
    """Peak RSS growth while writing 2M rows (~60 MB of CSV) stays well under the file's size."""
    out = tmp_path / "big.csv"
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(out)], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120)
    result = json.loads(proc.stdout)
    assert result["rows"] == 2_000_000 and result["bytes"] > 50_000_000
    assert result["delta_kib"] / 1024 < 25, result
