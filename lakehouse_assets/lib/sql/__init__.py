"""The pipeline's SQL: one statement per `.sql` file in this package, linted by sqlfluff.

Each file reads fixed names (lake tables, or temp tables and views the caller points at the right
rows first) and takes values as bound parameters (`$since`), so the text is never formatted."""

from functools import cache
from importlib import resources


@cache
def sql(name: str) -> str:
    """The statement in `<name>.sql` (a path below this package, e.g. `"silver/typed"`)."""
    return resources.files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")


def files(folder: str = "") -> list[str]:
    """The names (as `sql` takes them) of every `.sql` file below `folder`, sorted."""
    root = resources.files(__package__)
    found: list[str] = []
    pending = [(root.joinpath(folder) if folder else root, folder)]
    while pending:
        directory, prefix = pending.pop()
        for entry in directory.iterdir():
            name = f"{prefix}/{entry.name}" if prefix else entry.name
            if entry.is_dir():
                pending.append((entry, name))
            elif entry.name.endswith(".sql"):
                found.append(name.removesuffix(".sql"))
    return sorted(found)
