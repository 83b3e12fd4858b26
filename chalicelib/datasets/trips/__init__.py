"""The trips dataset: vehicle trips with a region, an origin, a destination and a start time.

Files live under `trips/` with the header `region,origin_coord,destination_coord,datetime,datasource`
(`date_time` is accepted for `datetime`). Coordinates are WKT `POINT (lon lat)`; times are naive UTC.

The data model keeps the answers instant at any size. Each trip is stored with derived columns: its ISO
week (named by its Monday), its time-of-day bucket and the grid cells of its origin and destination.
Each chunk's load adds to three rollups in the same transaction:
- `trip_region_weeks` / `trip_datasource_weeks`: trips per region (datasource) and week;
- `trip_cell_weeks`: trips per grid cell of the origin (point 'o') or destination ('d') and week.
When every chunk is in, the finishing steps add the file to `trip_groups`: trips per similarity
group (region, origin cell, destination cell, time-of-day bucket).

A bounding box is answered from `trip_cell_weeks` for the cells wholly inside it; only the trips in its
boundary cells (first and last column and row) are read, and tested against the exact coordinates.

The package: `schema` (tables, grid), `parsing`, `loading` (rows, rollups, groups, discard) and `queries`;
this module re-exports what the pipeline (chalicelib/datasets/base.py) and the routes use.
"""

from chalicelib.datasets.trips.loading import FINISH_STEPS, discard, finish, finish_step, load
from chalicelib.datasets.trips.parsing import parse
from chalicelib.datasets.trips.queries import (
    BBox,
    average_of,
    box_total,
    counts_by,
    dataset_weeks,
    get_trip,
    known_region,
    list_trips,
    monday,
    regions_inside,
    top_groups,
    trip_json,
    week_range,
    weekly_counts,
    weekly_series,
)
from chalicelib.datasets.trips.schema import (
    COLUMNS,
    EXAMPLE_ROW,
    EXTENT_COLUMNS,
    GROUP_KEYS,
    HAS_HEADER,
    LOAD_COLUMNS,
    PREFIX,
    TABLES,
    TEXT_CHARS,
    Grid,
    cell_weeks,
    context,
    datasource_weeks,
    groups,
    meta,
    read_grid,
    region_extents,
    region_weeks,
    trips,
)

__all__ = [
    "BBox", "COLUMNS", "EXAMPLE_ROW", "EXTENT_COLUMNS", "FINISH_STEPS", "GROUP_KEYS", "Grid", "HAS_HEADER",
    "LOAD_COLUMNS", "PREFIX", "TABLES", "TEXT_CHARS", "average_of", "box_total", "cell_weeks", "context",
    "counts_by", "dataset_weeks", "datasource_weeks", "discard", "finish", "finish_step", "get_trip", "groups",
    "known_region", "list_trips", "load", "meta", "monday", "parse", "read_grid", "region_extents",
    "region_weeks", "regions_inside", "top_groups", "trip_json", "trips", "week_range", "weekly_counts",
    "weekly_series",
]
