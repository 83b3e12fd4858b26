"""tools.generate_trips: byte layout, determinism, broken rows, the canonical sample, bounded memory."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from tools import generate_trips as gt

ROOT = Path(__file__).resolve().parents[1]
HEADER = "region,origin_coord,destination_coord,datetime,datasource"
WKT = re.compile(r"^POINT \((-?\d+(?:\.\d+)?) (-?\d+(?:\.\d+)?)\)$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
SMALL_BLOCKS = {"block_rows": 1_000}  # several blocks even for small files


def read_rows(path: Path) -> list[dict[str, str]]:
    """All fields as plain strings, the way an ingester would first see them."""
    names = HEADER.split(",")
    table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string())))
    if "date_time" in table.column_names:
        table = table.rename_columns(names)
    return table.to_pylist()


def problems(row: dict[str, str]) -> list[str]:
    """What is wrong with one row (empty for a good one)."""
    found = []
    if row["region"] not in gt.REGIONS:
        found.append("region")
    for col in ("origin_coord", "destination_coord"):
        m = WKT.match(row[col])
        if not m:
            found.append(f"{col} wkt")
        elif not (-180 <= float(m[1]) <= 180 and -90 <= float(m[2]) <= 90):
            found.append(f"{col} range")
    try:
        if not DATETIME.match(row["datetime"]):
            raise ValueError(row["datetime"])
        dt.datetime.strptime(row["datetime"], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        found.append("datetime")
    if row["datasource"] not in gt.DATASOURCES:
        found.append("datasource")
    return found


def test_same_seed_same_bytes_and_thread_count_irrelevant(tmp_path: Path) -> None:
    opts = {"rows": 5_500, "bad_rows": 0.05, "crlf": True, **SMALL_BLOCKS}
    a = gt.generate(tmp_path / "a.csv", seed=7, **opts)
    b = gt.generate(tmp_path / "b.csv", seed=7, workers=1, **opts)
    c = gt.generate(tmp_path / "c.csv", seed=8, **opts)
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a.csv").read_bytes() != (tmp_path / "c.csv").read_bytes()
    assert a == {**b, "path": a["path"]}
    assert c["rows"] == 5_500


@pytest.mark.parametrize("rows", [0, 1, 999, 1_000, 2_345])
def test_row_counts(tmp_path: Path, rows: int) -> None:
    path = tmp_path / "t.csv"
    summary = gt.generate(path, rows, seed=1, **SMALL_BLOCKS)
    lines = path.read_text().split("\n")
    assert lines[0] == HEADER and lines[-1] == ""
    assert len(lines) == rows + 2
    assert summary["rows"] == rows and summary["bad_rows"] == 0
    assert summary["bytes"] == path.stat().st_size
    assert sum(summary["region_counts"].values()) == rows
    assert Counter(r["region"] for r in read_rows(path)) == {k: v for k, v in summary["region_counts"].items() if v}


def test_good_rows_look_real(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    gt.generate(path, 3_000, seed=3, **SMALL_BLOCKS)
    rows = read_rows(path)
    assert all(problems(r) == [] for r in rows)
    decimals = Counter(len(WKT.match(r["origin_coord"])[1].split(".")[1]) for r in rows)
    assert max(decimals, key=decimals.get) in (13, 14)  # like 7.67283791328688
    for r in rows:
        lon, lat = (float(x) for x in WKT.match(r["origin_coord"]).groups())
        c_lon, c_lat = gt.REGIONS[r["region"]]
        assert abs(lon - c_lon) < 0.2 and abs(lat - c_lat) < 0.2
        assert "2018-05-01" <= r["datetime"][:10] <= "2018-05-31"
    # hotspots: the busiest 0.01 x 0.01 degree cell holds 20x the share of a uniform spread over
    # the +-0.15 degree box (30 x 30 cells per region)
    cells = Counter((r["region"], *(round(float(x), 2) for x in WKT.match(r["origin_coord"]).groups()))
                    for r in rows)
    assert cells.most_common(1)[0][1] > 20 * len(rows) / (3 * 30 * 30)
    # daily pattern: rush hour beats the middle of the night
    hours = Counter(int(r["datetime"][11:13]) for r in rows)
    assert hours[8] > 4 * hours[3] and hours[18] > 4 * hours[3]


def test_date_range_and_regions(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    summary = gt.generate(path, 2_000, seed=2, start="2019-01-30", end=dt.date(2019, 2, 2), regions=["Prague"])
    rows = read_rows(path)
    assert {r["region"] for r in rows} == {"Prague"} == set(summary["region_counts"])
    assert {r["datetime"][:10] for r in rows} == {"2019-01-30", "2019-01-31", "2019-02-01", "2019-02-02"}
    with pytest.raises(ValueError):
        gt.generate(path, 1, start="2019-02-02", end="2019-02-01")


def test_header_variants(tmp_path: Path) -> None:
    gt.generate(tmp_path / "a.csv", 10, datetime_header="date_time")
    assert (tmp_path / "a.csv").read_text().splitlines()[0] == HEADER.replace("datetime", "date_time")
    assert len(read_rows(tmp_path / "a.csv")) == 10
    gt.generate(tmp_path / "b.csv", 10, no_header=True)
    lines = (tmp_path / "b.csv").read_text().splitlines()
    assert len(lines) == 10 and lines[0].split(",")[0] in gt.REGIONS
    with pytest.raises(ValueError):
        gt.generate(tmp_path / "c.csv", 10, datetime_header="when")


def test_crlf_bom_no_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    gt.generate(path, 2_500, seed=4, crlf=True, bom=True, final_newline=False, **SMALL_BLOCKS)
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf" + HEADER.encode() + b"\r\n")
    assert not data.endswith(b"\n") and data.endswith(tuple(s.encode() for s in gt.DATASOURCES))
    assert data.count(b"\r\n") == 2_500 and data.count(b"\n") == 2_500
    plain = tmp_path / "plain.csv"
    gt.generate(plain, 2_500, seed=4, **SMALL_BLOCKS)
    assert data[3:].replace(b"\r\n", b"\n") + b"\n" == plain.read_bytes()
    assert len(read_rows(path)) == 2_500


def test_no_final_newline_edge_cases(tmp_path: Path) -> None:
    gt.generate(tmp_path / "a.csv", 0, final_newline=False)
    assert (tmp_path / "a.csv").read_bytes() == HEADER.encode()
    gt.generate(tmp_path / "b.csv", 1, final_newline=False, no_header=True)
    assert (tmp_path / "b.csv").read_bytes().count(b"\n") == 0


def test_gzip(tmp_path: Path) -> None:
    gz = tmp_path / "t.csv.gz"
    summary = gt.generate(gz, 2_000, seed=5, **SMALL_BLOCKS)  # .gz suffix implies gzip
    gt.generate(tmp_path / "t.csv", 2_000, seed=5, **SMALL_BLOCKS)
    assert gzip.decompress(gz.read_bytes()) == (tmp_path / "t.csv").read_bytes()
    assert summary["bytes"] == gz.stat().st_size < (tmp_path / "t.csv").stat().st_size
    gt.generate(tmp_path / "again.csv.gz", 2_000, seed=5, **SMALL_BLOCKS)
    assert (tmp_path / "again.csv.gz").read_bytes() == gz.read_bytes()
    gt.generate(tmp_path / "forced.bin", 10, gzip=True)
    assert (tmp_path / "forced.bin").read_bytes()[:2] == b"\x1f\x8b"


def test_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    summary = gt.generate(path, 20_000, seed=6, bad_rows=0.1, **SMALL_BLOCKS)
    rows = read_rows(path)  # still parses: broken rows keep five fields
    found = [problems(r) for r in rows]
    bad = [p for p in found if p]
    assert len(rows) == 20_000
    assert len(bad) == summary["bad_rows"]
    assert 1_700 < len(bad) < 2_300
    assert sum(summary["region_counts"].values()) == 20_000 - len(bad)
    kinds = Counter(k for p in bad for k in p)
    for kind in ("region", "origin_coord wkt", "destination_coord wkt", "datetime"):
        assert kinds[kind] > 200, kinds
    assert kinds["origin_coord range"] + kinds["destination_coord range"] > 200
    assert any(r["datetime"] == "2018-02-30 10:00:00" for r in rows)  # well-formed but impossible


def test_canonical_sample(tmp_path: Path) -> None:
    path = tmp_path / "sample.csv"
    summary = gt.canonical_sample(path)
    gt.canonical_sample(tmp_path / "again.csv")
    assert path.read_bytes() == (tmp_path / "again.csv").read_bytes()
    rows = read_rows(path)
    assert all(problems(r) == [] for r in rows)
    assert summary["region_counts"] == {"Turin": 38, "Prague": 34, "Hamburg": 28}
    assert Counter(r["region"] for r in rows) == summary["region_counts"]
    assert all(r["datetime"].startswith("2018-05-") for r in rows)
    weekly = Counter((r["region"], dt.date.fromisoformat(r["datetime"][:10]).isocalendar()[1]) for r in rows)
    for region, expected in gt.CANONICAL_WEEKLY.items():
        counts = tuple(weekly[(region, w)] for w in range(18, 23))
        assert counts == expected and min(counts) >= 1
    weeks = {dt.date.fromisoformat(r["datetime"][:10]).isocalendar()[1] for r in rows}
    assert weeks == {18, 19, 20, 21, 22}
    averages = {region: sum(c for (r, _), c in weekly.items() if r == region) / len(weeks) for region in gt.REGIONS}
    assert averages == pytest.approx({"Turin": 7.6, "Prague": 6.8, "Hamburg": 5.6})
    assert rows[0] == {"region": "Turin", "origin_coord": "POINT (7.67283791328688 44.995710924205)",
                       "destination_coord": "POINT (7.72036863753512 45.0678238539384)",
                       "datetime": "2018-05-21 02:54:04", "datasource": "baba_car"}


def test_canonical_sample_formats(tmp_path: Path) -> None:
    gt.canonical_sample(tmp_path / "s.csv.gz", crlf=True, datetime_header="date_time")
    text = gzip.decompress((tmp_path / "s.csv.gz").read_bytes()).decode()
    assert text.startswith(HEADER.replace("datetime", "date_time") + "\r\n") and text.count("\r\n") == 101


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli.csv"
    assert gt.main([str(out), "--rows", "1234", "--seed", "9", "--regions", "Turin,Hamburg", "--crlf",
                    "--datetime-header", "date_time", "--bad-rows", "0.01"]) == 0
    gt.generate(tmp_path / "lib.csv", 1234, 9, regions=["Turin", "Hamburg"], crlf=True,
                datetime_header="date_time", bad_rows=0.01)
    assert out.read_bytes() == (tmp_path / "lib.csv").read_bytes()


MEMORY_PROBE = """
import json, resource, sys
from tools import generate_trips as gt
gt.generate(sys.argv[1] + ".warm", 60_000, seed=1)  # imports, caches, thread pool, allocator warm-up
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
summary = gt.generate(sys.argv[1], 2_000_000, seed=1)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": summary["rows"], "bytes": summary["bytes"], "delta_kib": after - before}))
"""


def test_memory_is_bounded_for_2m_rows(tmp_path: Path) -> None:
    """Peak RSS growth while writing 2M rows (~250 MB of CSV) stays well under the whole file's size."""
    out = tmp_path / "big.csv"
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(out)], cwd=ROOT, capture_output=True,
                          text=True, check=True, timeout=120)
    result = json.loads(proc.stdout)
    assert result["rows"] == 2_000_000 and result["bytes"] > 200_000_000
    assert result["delta_kib"] / 1024 < 200, result
