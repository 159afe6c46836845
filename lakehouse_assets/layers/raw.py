"""Raw layer: the transaction files in the landing folder."""

import dagster as dg

from lakehouse_assets.landing import describe_files
from lakehouse_assets.resources import LandingZone
from lakehouse_assets.sample import write_sample


class RawConfig(dg.Config):
    seed_sample_if_empty: bool = True
    """Write the built-in sample into the landing folder when it holds no data files."""


@dg.asset(group_name="raw", kinds={"file"})
def raw_transactions(
    context: dg.AssetExecutionContext, config: RawConfig, landing: LandingZone
) -> dg.MaterializeResult:
    """Transaction logs (CSV or Parquet) in the landing folder, with their sizes and content hashes.

    When the folder holds no data files, the built-in sample (10,000 transactions for 1,000
    customers) is written there first, unless `seed_sample_if_empty` is off.
    """
    folder = landing.folder()
    paths = landing.data_files()
    if not paths and config.seed_sample_if_empty:
        sample = write_sample(folder, progress=context.log.info)
        context.log.info(f"Landing folder {folder} held no data files: wrote the sample {sample}")
        paths = landing.data_files()
    if not paths:
        raise dg.Failure(
            f"No CSV or Parquet files in the landing folder {folder}, and seeding the sample is off.",
            allow_retries=False,
        )
    files = describe_files(folder, paths)
    listing = "\n".join(
        [
            "| file | bytes | sha256 |",
            "|---|---|---|",
            *(f"| {f.relative_path} | {f.size_bytes:,} | `{f.sha256[:16]}…` |" for f in files),
        ]
    )
    return dg.MaterializeResult(
        metadata={
            "landing_folder": dg.MetadataValue.path(str(folder)),
            "file_count": len(files),
            "total_bytes": sum(f.size_bytes for f in files),
            "files": dg.MetadataValue.md(listing),
            "sha256": dg.MetadataValue.json({f.relative_path: f.sha256 for f in files}),
        }
    )
