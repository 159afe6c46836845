"""Raw layer: the transaction files in the landing folder."""

import dagster as dg

from lakehouse_assets.lib.landing import describe_files
from lakehouse_assets.lib.metadata import markdown_rows
from lakehouse_assets.lib.resources import LandingZone
from lakehouse_assets.lib.sample import write_sample
from lakehouse_assets.lib.settings import HOME_ENV, LANDING_ENV


class RawConfig(dg.Config):
    seed_sample_if_empty: bool = True
    """Write the built-in sample into the default landing folder when it holds no data files."""


@dg.asset(group_name="raw", kinds={"file"})
def raw_transactions(
    context: dg.AssetExecutionContext, config: RawConfig, landing: LandingZone
) -> dg.MaterializeResult:
    """Transaction logs (CSV or Parquet) in the landing folder, with their sizes and content hashes.

    When the default landing folder (`$LAKEHOUSE_HOME/landing`) holds no files, the built-in
    sample (10,000 transactions for 1,000 customers) is written there first, unless
    `seed_sample_if_empty` is off. A landing folder that you configured must exist and hold data
    files: the sample is never written there. Other files are listed in `ignored_files`.
    """
    folder = landing.folder()
    paths = landing.data_files()
    ignored = landing.ignored_files()
    if not paths:
        _no_data_files(context, config, landing, ignored)
        paths = landing.data_files()
    if ignored:
        context.log.warning(
            f"Ignored {len(ignored)} file(s) in {folder} that are not CSV or Parquet: "
            + "; ".join(f"{name} ({why})" for name, why in ignored.items())
        )
    files = describe_files(folder, paths)
    listing = markdown_rows(
        ["file", "bytes", "sha256"],
        [(f.relative_path, f"{f.size_bytes:,}", f"{f.sha256[:16]}…") for f in files],
    )
    return dg.MaterializeResult(
        metadata={
            "landing_folder": dg.MetadataValue.path(str(folder)),
            "landing_folder_set_by": landing.configured_by() or f"default (${HOME_ENV}/landing)",
            "file_count": len(files),
            "total_bytes": sum(f.size_bytes for f in files),
            "files": dg.MetadataValue.md(listing),
            "sha256": dg.MetadataValue.json({f.relative_path: f.sha256 for f in files}),
            "ignored_file_count": len(ignored),
            "ignored_files": dg.MetadataValue.md(
                markdown_rows(["file", "why it is not read"], list(ignored.items()))
            ),
        }
    )


def _no_data_files(context, config: RawConfig, landing: LandingZone, ignored: dict) -> None:
    """Seed the default folder with the sample, or fail naming the setting and the path."""
    folder, configured = landing.folder(), landing.configured_by()
    if configured is None and config.seed_sample_if_empty and not ignored:
        sample = write_sample(folder, progress=context.log.info)
        context.log.info(f"Landing folder {folder} held no data files: wrote the sample {sample}")
        return
    others = "; ".join(f"{name}: {why}" for name, why in ignored.items())
    if configured is None and ignored:
        problem = f"holds no CSV or Parquet files, only {others} (the sample is written only into an empty default folder)"  # fmt: skip
    elif configured is None:
        problem = "holds no CSV or Parquet files, and seeding the sample is off"
    elif not folder.exists():
        problem = "does not exist"
    elif not folder.is_dir():
        problem = "is not a folder"
    else:
        problem = "holds no CSV or Parquet files" + (f", only {others}" if others else "")
    if configured == f"${LANDING_ENV}":
        hint = f" Check the path, or unset {LANDING_ENV} to run on the built-in sample in ${HOME_ENV}/landing."  # fmt: skip
    elif configured:
        hint = " Check the path in the `landing` resource's configuration."
    else:
        hint = ""
    raise dg.Failure(
        f"The landing folder {folder}{f' (set by {configured})' if configured else ''} {problem}. "
        f"Nothing was written.{hint}",
        metadata={"landing_folder": dg.MetadataValue.path(str(folder))},
        allow_retries=False,
    )
