"""The pr-reviews dataset: PR review and merge times per team, a report and eight plots per upload.

Files live under `pr-reviews/` with the header `review_time,team,date,merge_time` (any order, extra
columns ignored). The modules:
- `parsing`: typing and validating a block of rows (vectorised);
- `tables`: the rows and the stored reports;
- `summary`: the statistics, computed in the database (PostgreSQL's ordered-set aggregates);
- `plotdata` / `plots`: what the plots show (bounded JSON) and drawing them (matplotlib, lazily);
- `steps`: loading, the finishing step, `finish` (plots to S3) and `discard`;
- `queries`: the report of one upload and the team report across uploads, for the routes.
"""

from chalicelib.datasets.pr_reviews.parsing import parse
from chalicelib.datasets.pr_reviews.steps import (
    COLUMNS,
    FINISH_STEPS,
    HAS_HEADER,
    PREFIX,
    TABLES,
    context,
    discard,
    finish,
    finish_step,
    load,
)

__all__ = [
    "COLUMNS", "FINISH_STEPS", "HAS_HEADER", "PREFIX", "TABLES",
    "context", "discard", "finish", "finish_step", "load", "parse",
]
