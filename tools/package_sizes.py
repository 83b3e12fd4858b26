"""Lambda package sizes: the function package Chalice builds, the plots layer built here, and the AWS
SDK for pandas layer, against Lambda's limits (50 MB zipped upload; 262,144,000 bytes unzipped for a
function and all its layers together).

    python -m tools.package_sizes report out/               sizes of a `chalice package` directory
    python -m tools.package_sizes plots-layer build/        build the plots layer zip (matplotlib)
    python -m tools.package_sizes pandas-layer [ARN]        measure the pinned pandas layer (needs AWS)
    python -m tools.package_sizes pandas-layer-estimate     estimate it without AWS (see below)

The plots layer holds matplotlib and what it needs besides numpy (which the pandas layer has), built
for manylinux / Python 3.11 and trimmed: shared libraries stripped, no tests or caches, no sample data,
DejaVu fonts only, no AVIF codec. Only the chunk workers carry it (README, Deploying).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZIP_LIMIT = 50 * 1024 * 1024  # a directly uploaded deployment package
UNZIPPED_LIMIT = 262_144_000  # function code and every layer, unzipped

PLATFORM = ["--platform", "manylinux2014_x86_64", "--implementation", "cp", "--python-version", "3.11",
            "--only-binary=:all:"]
# matplotlib's own dependencies except numpy (in the pandas layer), python-dateutil and packaging
# (in the pandas layer too, as pandas needs them).
PLOTS = ["matplotlib==3.11.2", "pillow==12.2.0", "fonttools==4.68.0", "kiwisolver==1.5.1",
         "contourpy==1.3.2", "cycler==0.12.1", "pyparsing==3.3.3"]
KEEP_FONTS = ("DejaVuSans", "LastResort")
# What the AWS SDK for pandas layer is built from (its building/lambda/build-lambda-layer.sh).
PANDAS_LAYER = "awswrangler[redshift,mysql,postgres,gremlin,opensearch,openpyxl]==3.17.1"


def unzipped_size(path: Path) -> int:
    with zipfile.ZipFile(path) as archive:
        return sum(info.file_size for info in archive.infolist())


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _pip_install(target: Path, requirements: list[str], *, deps: bool) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", *PLATFORM, "--target", str(target)]
    subprocess.run([*command, *([] if deps else ["--no-deps"]), *requirements], check=True)


def _trim(site: Path) -> None:
    """What the pandas layer's build does (strip, drop tests and caches), plus plots-only trims."""
    for path in list(site.rglob("*")):
        if not path.exists() or path.is_symlink():
            continue
        if path.is_dir() and (path.name == "__pycache__" or path.name == "tests"):
            shutil.rmtree(path)
        elif path.is_file() and (".so" in path.name):
            subprocess.run(["strip", str(path)], check=False, stderr=subprocess.DEVNULL)
        elif path.suffix in (".pyc", ".pyo"):
            path.unlink()
    shutil.rmtree(site / "bin", ignore_errors=True)


def build_plots_layer(out_dir: Path) -> Path:
    """Build plots-layer.zip (python/... inside) in out_dir; returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "python"
        _pip_install(site, PLOTS, deps=False)
        _trim(site)
        data = site / "matplotlib" / "mpl-data"
        shutil.rmtree(data / "sample_data", ignore_errors=True)
        for font in (data / "fonts" / "ttf").glob("*.ttf"):
            if not font.name.startswith(KEEP_FONTS):
                font.unlink()
        for codec in [*site.glob("PIL/_avif*.so"), *site.glob("pillow.libs/libavif*")]:
            codec.unlink()
        layer = out_dir / "plots-layer.zip"
        with zipfile.ZipFile(layer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(site.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(Path(tmp)))
    return layer


def estimate_pandas_layer() -> dict[str, int]:
    """The pandas layer's recipe with PyPI's manylinux wheels: awswrangler and its extras, without
    boto3/botocore/urllib3/s3transfer (the runtime's), stripped, no tests or caches. PyPI's pyarrow
    carries Flight and Substrait and numpy bundles OpenBLAS, which the layer's own builds do not, so
    the figure without them is given too."""
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "python"
        _pip_install(site, [PANDAS_LAYER], deps=True)
        for pattern in ("boto*", "urllib3*", "s3transfer*"):
            for path in site.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        _trim(site)
        recipe = tree_size(site)
        extra = [*site.glob("numpy.libs/*"), *site.glob("pyarrow/*flight*"), *site.glob("pyarrow/*substrait*")]
        return {"recipe_with_pypi_wheels": recipe,
                "without_openblas_flight_substrait": recipe - sum(p.stat().st_size for p in extra if p.is_file())}


def measure_pandas_layer(arn: str) -> int:
    """Download a published layer version (needs AWS credentials) and return its unzipped size."""
    import urllib.request

    import boto3

    location = boto3.client("lambda").get_layer_version_by_arn(Arn=arn)["Content"]["Location"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "layer.zip"
        urllib.request.urlretrieve(location, path)  # noqa: S310 - a presigned https URL from Lambda
        return unzipped_size(path)


def budget(package_dir: Path, pandas_layer: int, plots_layer: int | None = None) -> dict[str, int]:
    """Bytes of each part, and the unzipped totals of an ordinary function and of a chunk worker."""
    zipped = (package_dir / "deployment.zip").stat().st_size
    function = unzipped_size(package_dir / "deployment.zip")
    sizes = {"deployment_zip": zipped, "function_unzipped": function, "pandas_layer_unzipped": pandas_layer,
             "function_with_pandas_layer": function + pandas_layer}
    if plots_layer is not None:
        sizes["plots_layer_unzipped"] = plots_layer
        sizes["chunk_worker_with_both_layers"] = function + pandas_layer + plots_layer
    return sizes


def _recorded_pandas_layer() -> int:
    return int(json.loads((ROOT / ".chalice" / "stages.json").read_text())["pandas_layer_unzipped_bytes"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    report = sub.add_parser("report")
    report.add_argument("package", type=Path)
    report.add_argument("--plots-layer", type=Path, help="a plots-layer.zip to count for the chunk workers")
    plots = sub.add_parser("plots-layer")
    plots.add_argument("out", type=Path)
    pandas = sub.add_parser("pandas-layer")
    pandas.add_argument("arn", nargs="?")
    sub.add_parser("pandas-layer-estimate")
    args = parser.parse_args(argv)
    if args.command == "plots-layer":
        layer = build_plots_layer(args.out)
        print(f"{layer}: {layer.stat().st_size:,} bytes zipped, {unzipped_size(layer):,} unzipped")
    elif args.command == "pandas-layer":
        config = json.loads((ROOT / ".chalice" / "config.json").read_text())
        print(f"{measure_pandas_layer(args.arn or config['layers'][0]):,} bytes unzipped")
    elif args.command == "pandas-layer-estimate":
        for name, size in estimate_pandas_layer().items():
            print(f"{name}: {size:,} bytes")
    else:
        plots_size = unzipped_size(args.plots_layer) if args.plots_layer else None
        sizes = budget(args.package, _recorded_pandas_layer(), plots_size)
        for name, size in sizes.items():
            print(f"{name}: {size:,} bytes ({size / 1024 / 1024:.1f} MiB)")
        over = [n for n, s in sizes.items() if n.startswith(("function_with", "chunk_worker")) and s > UNZIPPED_LIMIT]
        if sizes["deployment_zip"] > ZIP_LIMIT or over:
            print(f"over Lambda's limits: {over or ['deployment_zip']}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main())
