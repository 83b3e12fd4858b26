"""pr-reviews files through `on_csv_upload`, each report checked against pandas computing it on its own
over the same rows: spreadsheet formats, Excel dates, missing values, ties, tiny teams, bad files and
bad rows with their line numbers, chunk sizes."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
import sqlalchemy as sa

from chalicelib.db import get_engine
from chalicelib.stats import summary
from tests.support.ingest import get, ingest, invoke
from tests.support.pr_reviews import (
    TIMES,
    csv_bytes,
    expected_report,
    frame,
    normalised,
    read_file,
    without_outliers_section,
)
from tools.generate_pr_reviews import generate


def _report(client, ingestion: dict) -> dict:
    assert ingestion["status"] == "done", ingestion
    return get(client, f"/pr-reviews/reports/{ingestion['id']}")["report"]


def _assert_pandas_agrees(report: dict, df: pd.DataFrame) -> None:
    assert normalised(without_outliers_section(report)) == normalised(expected_report(df))


#: Rows chosen for the edge cases: even counts (medians between two values), ties for the mode
#: (smallest wins), a team of one row, a team whose times are all 0, missing cells in every column,
#: means on a rounding half (0.25 -> 0.2, 0.35 -> 0.4 as pandas rounds).
EDGE_ROWS = [
    (5, "Ties", "2023-01-01", 7),
    (5, "Ties", "2023-01-02", 7),
    (9, "Ties", "2023-01-03", 3),
    (9, "Ties", "2023-01-04", 3),
    (1, "Ties", "2023-01-05", 20),
    (42, "Solo", "2023-03-01", 8),
    (0, "Zeros", "2023-01-10", 0),
    (0, "Zeros", "2023-01-11", 0),
    (0, "Zeros", "2023-01-12", 0),
    (1, "Quarter", "2023-02-01", 0),
    (0, "Quarter", "2023-02-01", 0),
    (0, "Quarter", "2023-02-01", 0),
    (0, "Quarter", "2023-02-01", 0),
    (7, "Half", "2023-02-02", 1),
    *[(0, "Half", "2023-02-02", 1)] * 19,
    (None, "Gaps", "2023-02-03", 4),
    (6, "Gaps", None, None),
    (8, None, "2023-02-04", 2),
    (None, None, None, 9),
]


def test_edge_cases_agree_with_pandas(client, aws):
    report = _report(client, ingest(client, aws, "pr-reviews/edges.csv", csv_bytes(EDGE_ROWS)))
    _assert_pandas_agrees(report, frame(EDGE_ROWS))
    teams = report["per_team"]
    assert teams["Ties"]["mode"] == {"review_time": 5, "merge_time": 3, "total_time": 12}
    assert teams["Ties"]["median"]["review_time"] == 5 and teams["Zeros"]["median"]["total_time"] == 0
    assert teams["Solo"]["median"] == {"review_time": 42, "merge_time": 8, "total_time": 50}
    assert teams["Quarter"]["mean"]["review_time"] == 0.2 and teams["Half"]["mean"]["review_time"] == 0.4
    assert teams["Gaps"]["counts"] == {"review_time": 1, "merge_time": 1, "total_time": 0}
    assert teams["Gaps"]["mean"]["total_time"] is None and teams["Gaps"]["mode"]["total_time"] is None
    assert report["num_missing_values"] == {"review_time": 2, "merge_time": 1, "date": 2, "team": 2}
    assert report["total_num_observations"] == len(EDGE_ROWS)
    _assert_outliers_agree(report["outliers"], frame(EDGE_ROWS))


def test_statistics_agree_with_the_shared_summary_function(client, aws):
    report = _report(client, ingest(client, aws, "pr-reviews/edges.csv", csv_bytes(EDGE_ROWS)))
    df = frame(EDGE_ROWS)
    df["total_time"] = df["review_time"] + df["merge_time"]
    for team, group in [(None, df), *df.groupby("team")]:
        block = report["stats"] if team is None else report["per_team"][team]
        for name in TIMES:
            expected = summary(group[name].tolist(), decimals=1)
            assert block["counts"][name] == expected["count"]
            assert (block["mean"][name], block["median"][name], block["mode"][name]) == (
                expected["mean"], expected["median"], expected["mode"]), (team, name)


@pytest.mark.parametrize("options", [
    {"missing": 0.03, "excel_dates": 0.3},
    {"no_review": 0.9, "no_ci": 0.9, "teams": ["Solo"]},
    {"crlf": True, "bom": True, "final_newline": False, "extra_column": True,
     "order": ["merge_time", "date", "team", "review_time"], "teams": ["A", "B", "C", "D", "E", "F", "G", "H"]},
])
def test_generated_files_agree_with_pandas(client, aws, tmp_path, options):
    path = tmp_path / "prs.csv"
    summary_ = generate(path, 3000, seed=4, **options)
    report = _report(client, ingest(client, aws, "pr-reviews/generated.csv", path.read_bytes()))
    df = read_file(path.read_bytes())
    assert len(df) == summary_["rows"] == 3000
    _assert_pandas_agrees(report, df)
    _assert_outliers_agree(report["outliers"], df)


def _assert_outliers_agree(section: dict, df: pd.DataFrame) -> None:
    """Quartiles by linear interpolation (pandas' default), Tukey's fences, and who lies outside."""
    outside = pd.Series(False, index=df.index)
    for name in ("review_time", "merge_time"):
        q1, q3 = df[name].quantile(0.25), df[name].quantile(0.75)
        low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        out = (df[name] < low) | (df[name] > high)
        assert section[name] == {"q1": q1, "q3": q3, "low": low, "high": high, "count": int(out.sum())}, name
        outside |= out
    assert section["prs"] == int(outside.sum())


def test_excel_serial_dates_and_iso_dates_are_the_same_days(client, aws):
    iso = [(10, "A", "2023-01-14", 1), (20, "A", "2023-02-14", 2)]
    serial = [(10, "A", "44940", 1), (20, "A", "44971.5", 2)]
    first = _report(client, ingest(client, aws, "pr-reviews/iso.csv", csv_bytes(iso)))
    second = _report(client, ingest(client, aws, "pr-reviews/serial.csv", csv_bytes(serial)))
    assert first["date_interval"] == second["date_interval"] == {"begin": "2023-01-14", "end": "2023-02-14"}
    assert first == second


def test_spreadsheet_formats_give_the_same_report(client, aws):
    rows = [(10, "Platform", "2023-01-14", 1), (0, "Data Service", "2023-01-15", 0), (30, "Platform", "2023-01-16", 5)]
    plain = _report(client, ingest(client, aws, "pr-reviews/plain.csv", csv_bytes(rows)))
    resaved = (
        "\ufeffteam,merge_time,notes,date,review_time\r\n"
        '"Platform",1,"first, quoted",2023-01-14,10\r\n'
        "Data Service,0,,44941,0\r\n"
        "Platform,5.0,x,2023-01-16 00:00:00,30"
    ).encode()
    for key, body in (("pr-reviews/resaved.csv", resaved), ("pr-reviews/resaved.csv.gz", gzip.compress(resaved))):
        assert _report(client, ingest(client, aws, key, body)) == plain


@pytest.mark.parametrize(("body", "phrases"), [
    (b"", ["empty"]),
    (b"review_time,team,date,merge_time\n", ["no data rows"]),
    (b"review_time,team,date\n1,A,2023-01-01\n", ["merge_time", "review_time, team, date, merge_time",
                                                  "this one says: review_time, team, date"]),
    (b"reveiw_time,team,date,merge_time\n1,A,2023-01-01,2\n", ["no review_time column", "reveiw_time"]),
    (b"\x00\x01\x02binary", ["binary"]),
])
def test_bad_files_fail_with_a_sentence(client, aws, body, phrases):
    ingestion = ingest(client, aws, "pr-reviews/bad.csv", body)
    assert ingestion["status"] == "failed" and ingestion["rows_loaded"] == 0
    for phrase in phrases:
        assert phrase in ingestion["error"], (phrase, ingestion["error"])


def test_bad_rows_are_rejected_with_their_line_numbers_and_good_rows_kept(client, aws, app_env):
    good = [(10 + i, "A" if i % 2 else "B", f"2023-01-{1 + i % 28:02d}", i) for i in range(60)]
    lines = csv_bytes(good).decode().splitlines()
    bad = {5: "abc,A,2023-01-01,1", 9: "1,A,2023-01-01,-4", 14: "1,A,2023-02-30,1", 20: "1,A,,12.5",
           33: "-1,B,14/01/2023,1"}
    for line_no, text in sorted(bad.items()):
        lines.insert(line_no - 1, text)
    ingestion = ingest(client, aws, "pr-reviews/some-bad.csv", ("\n".join(lines) + "\n").encode())
    assert ingestion["status"] == "done" and ingestion["rows_loaded"] == 60 and ingestion["rows_rejected"] == 5
    errors = {e["line"]: e["message"] for e in ingestion["errors"]}
    assert sorted(errors) == sorted(bad)
    assert errors[5] == "review_time 'abc' is not a whole number of seconds like 3600"
    assert errors[9].startswith("merge_time '-4' is negative")
    assert errors[14].startswith("date '2023-02-30' is not a date like 2023-01-14")
    assert errors[20] == "merge_time '12.5' is not a whole number of seconds like 3600"
    assert errors[33].startswith("review_time '-1' is negative")
    _assert_pandas_agrees(_report(client, ingestion), frame(good))


def test_too_many_bad_rows_fail_the_file_and_keep_nothing(client, aws, app_env):
    body = csv_bytes([(1, "A", "2023-01-01", 1)] * 5 + [("x", "A", "2023-01-01", 1)] * 5)
    ingestion = ingest(client, aws, "pr-reviews/mostly-bad.csv", body)
    assert ingestion["status"] == "failed" and "rejected" in ingestion["error"]
    with get_engine(app_env).connect() as conn:
        assert conn.execute(sa.text("select count(*) from pr_reviews")).scalar() == 0
        assert conn.execute(sa.text("select count(*) from pr_review_reports")).scalar() == 0
    response = client.http.get(f"/pr-reviews/reports/{ingestion['id']}")
    assert response.status_code == 422 and "rejected" in json.loads(response.body)["error"]


def test_a_file_of_only_missing_values_has_a_report_of_nothing(client, aws):
    report = _report(client, ingest(client, aws, "pr-reviews/gaps.csv", csv_bytes([(None, "A", None, None)] * 3)))
    assert report["stats"]["count"] == 3 and report["stats"]["mean"]["review_time"] is None
    assert report["date_interval"] == {"begin": None, "end": None}
    assert report["num_missing_values"] == {"review_time": 3, "merge_time": 3, "date": 3, "team": 0}
    assert report["outliers"]["review_time"] is None


@pytest.mark.parametrize("chunk_bytes", [1024, 4096])
def test_chunk_size_does_not_change_the_report(client, aws, tmp_path, monkeypatch, chunk_bytes):
    path = tmp_path / "prs.csv"
    generate(path, 2500, seed=9, missing=0.02, excel_dates=0.1)
    whole = _report(client, ingest(client, aws, "pr-reviews/whole.csv", path.read_bytes()))
    monkeypatch.setenv("CHUNK_BYTES", str(chunk_bytes))
    path.write_bytes(path.read_bytes() + b"\n")  # other bytes (not a duplicate), the same rows
    chunked = ingest(client, aws, "pr-reviews/chunked.csv", path.read_bytes())
    assert chunked["rows_loaded"] == 2500 and chunked["duplicate_of"] is None
    assert _report(client, chunked) == whole
    invoke(client, "pr-reviews/chunked.csv")  # replayed: nothing changes
    assert get(client, f"/pr-reviews/reports/{chunked['id']}")["report"] == whole


@pytest.mark.parametrize("options", [{}, {"missing": 0.05}, {"teams": [f"T{i:02d}" for i in range(15)]}])
def test_what_the_plots_show_agrees_with_pandas(client, aws, app_env, tmp_path, options):
    """The plots' data: per label (all teams first) the count, mean, median and extremes of each time,
    with and without its outliers; PRs and mean times per label; histograms that add up."""
    from chalicelib.datasets.pr_reviews import plotdata

    path = tmp_path / "prs.csv"
    generate(path, 2000, seed=11, **options)
    ingestion = ingest(client, aws, "pr-reviews/plotted.csv", path.read_bytes())
    with get_engine(app_env).connect() as conn:
        inputs = json.loads(conn.execute(sa.text("select plot_inputs from pr_review_reports")).scalar())
    df = read_file(path.read_bytes())
    top = df["team"].value_counts().sort_index().sort_values(ascending=False, kind="stable").index[:12]
    df["label"] = df["team"].where(df["team"].isin(top), plotdata.OTHER_TEAMS).where(df["team"].notna(), plotdata.NO_TEAM)
    assert inputs["prs"] == len(df) and inputs["title"] == ingestion["key"]
    assert inputs["labels"][:len(top)] == sorted(top)
    keep = pd.Series(True, index=df.index)
    for name in ("review_time", "merge_time"):
        low, high = inputs["fences"][name]
        keep &= df[name].isna() | df[name].between(low, high)
    for variant, rows in (("with_outliers", df), ("no_outliers", df[keep])):
        data = inputs["variants"][variant]
        assert data["prs"] == rows.groupby("label").size().to_dict()
        for label, g in rows.groupby("label"):
            assert data["means"][label] == pytest.approx({n: g[n].mean() for n in ("review_time", "merge_time")})
        for name in ("review_time", "merge_time"):
            low, high = inputs["fences"][name]
            values = df[df[name].notna() & (df[name].between(low, high) if variant == "no_outliers" else True)]
            violins = data["distributions"][name]
            assert [v["label"] for v in violins] == [plotdata.ALL_TEAMS, *sorted(values["label"].unique())]
            for violin in violins:
                part = values if violin["label"] == plotdata.ALL_TEAMS else values[values["label"] == violin["label"]]
                assert (violin["count"], violin["min"], violin["max"]) == (len(part), part[name].min(), part[name].max())
                assert violin["mean"] == pytest.approx(part[name].mean()) and violin["median"] == part[name].median()
                assert sum(violin["counts"]) == len(part)
