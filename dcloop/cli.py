"""The dcloop command line: parse, load the config, call one library function, print.

Exit codes: 0 success (including "nothing changed"), 1 error, 2 usage error,
3 another dcloop process holds the project's lock.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import DcloopError

EXIT_CODES_HELP = "Exit codes: 0 success (also when nothing changed), 1 error, 2 usage error, 3 project locked."


class DcloopGroup(click.Group):
    """Turns a DcloopError anywhere below into 'Error: ...' and its exit code, in one place."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DcloopError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)


def say(message: str) -> None:
    """Progress and logs go to stderr; stdout is for results."""
    click.echo(f"dcloop: {message}", err=True)


def project_dir(function):
    return click.argument("directory", type=click.Path(file_okay=False, path_type=Path),
                          default=".", required=False)(function)


def json_option(function):
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(function)


@click.group(cls=DcloopGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="dcloop")
def cli():
    """Fix an image dataset in a spreadsheet: dcloop pulls the labels, retrains a fixed model and
    writes its predictions and a suspicion score back next to every row.

    \b
    First run, no account needed:
        dcloop quickstart demo
    """


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--from-folder", "folder", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="An ImageFolder tree: PATH/<class>/* or PATH/<split>/<class>/*.")
@click.option("--from-csv", "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A CSV file with columns url,label[,split].")
@click.option("--classes", help="Comma-separated class names (default: the labels found).")
@click.option("--sheet", help="A Google Sheet url or key to use as the label table instead of labels.csv.")
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path),
              help="Service-account JSON key for --sheet.")
def init(directory, folder, csv_file, classes, sheet, credentials):
    """Create a project in DIRECTORY from an image folder tree or a CSV of urls and labels.

    \b
    Examples:
        dcloop init roman --from-folder data/roman-numerals
        dcloop init pets --from-csv pets.csv --classes cat,dog
    """
    from .config import Config
    from .project import init_project, rows_from_csv, rows_from_folder

    if bool(folder) == bool(csv_file):
        raise click.UsageError("give exactly one of --from-folder PATH or --from-csv FILE.")
    rows = rows_from_folder(folder) if folder else rows_from_csv(csv_file)
    config = Config()
    if sheet:
        config.table.backend, config.table.sheet = "gsheet", sheet
        config.table.credentials = str(credentials.resolve()) if credentials else ""
    class_list = [c.strip() for c in classes.split(",")] if classes else None
    config, table = init_project(directory, rows, class_list, config)
    counts = table["split"].value_counts()
    click.echo(f"Created {directory} with {len(table)} rows "
               f"({', '.join(f'{counts[s]} {s}' for s in counts.index)}) and classes {', '.join(config.project.classes)}.")
    click.echo(f"Next: edit the labels in {table_name(config)}, then run: dcloop sync {directory}")


def table_name(config) -> str:
    return config.table.path if config.table.backend == "csv" else f"the sheet {config.table.sheet}"


@cli.command()
@project_dir
@click.option("--force", is_flag=True, help="Retrain even when nothing changed.")
@click.option("--epochs", type=int, help="Override [model] epochs (changes the model fingerprint).")
@click.option("--device", help="Train on this torch device (auto, cpu, cuda); default from dcloop.toml.")
@json_option
def sync(directory, force, epochs, device, as_json):
    """Pull the labels, retrain the fixed model if anything changed, write predictions back.

    \b
    Example:
        dcloop sync demo
    """
    from .config import load_config
    from .sync import sync as run_sync

    config = load_config(directory, {"model": {"epochs": epochs, "device": device}})
    report = run_sync(directory, config, force=force, progress=say)
    print_sync_report(report, as_json)


def print_sync_report(report, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_json()))
        return
    click.echo(report.message)
    for line in flag_summary(report.flagged):
        click.echo(line)


def flag_summary(flagged: dict[str, list[str]], shown: int = 8) -> list[str]:
    """One line per kind of problem: how many rows, and which ids."""
    kinds: dict[str, list[str]] = {}
    for row_id, reasons in flagged.items():
        for reason in reasons:
            kinds.setdefault(reason.split(":")[0], []).append(row_id)
    lines = []
    for kind, ids in sorted(kinds.items()):
        more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
        lines.append(f"{len(ids)} row(s) {kind}, left out of training: {', '.join(ids[:shown])}{more}")
    return lines


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="dcloop-demo",
                required=False)
@click.option("--epochs", type=int, default=15, show_default=True, help="Training epochs for the demo.")
@json_option
def quickstart(directory, epochs, as_json):
    """Build a demo project from scikit-learn's handwritten digits, with 8% of the training labels
    flipped on purpose, run one sync and show the most suspicious rows.

    \b
    Example:
        dcloop quickstart demo
    """
    from .config import load_config
    from .quickstart import create_demo
    from .sync import sync as run_sync

    say(f"writing 1,797 digit images and a label table to {directory}")
    create_demo(directory, epochs=epochs)
    report = run_sync(directory, load_config(directory), progress=say)
    top = most_suspicious(directory, 10)
    flipped = set(pd_read(directory / "flipped_labels.csv")["url"])
    if as_json:
        click.echo(json.dumps({**report.to_json(), "top": top.to_dict("records")}))
        return
    click.echo(report.message)
    click.echo("\nThe 10 rows the model doubts most (* = a label the demo flipped on purpose):")
    for row in top.itertuples():
        mark = "*" if row.url in flipped else " "
        click.echo(f" {mark} {row.id}  {row.url:<24} label {row.label}  model says {row.prediction} "
                   f"({row.confidence})  suspicion {row.suspicion}")
    hits = sum(url in flipped for url in top["url"])
    click.echo(f"\n{hits} of these 10 are labels the demo flipped. Next: open {directory / 'labels.csv'}, "
               f"fix the labels you disagree with (sort by suspicion), then run: dcloop sync {directory}")


def pd_read(path: Path):
    import pandas as pd
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def most_suspicious(directory: Path, n: int):
    from .config import load_config
    from .backends import open_backend

    table = open_backend(load_config(directory), directory).read()
    table = table[table["suspicion"] != ""]
    return table.assign(s=table["suspicion"].astype(float)).sort_values("s", ascending=False).head(n)


@cli.command()
@project_dir
@json_option
def status(directory, as_json):
    """Label version, rows per split and class, edits since the last training, the last score.

    \b
    Example:
        dcloop status demo
    """
    from .config import load_config
    from .status import project_status

    info = project_status(directory, load_config(directory))
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(format_status(info))


def format_status(info: dict) -> str:
    lines = [f"label version  {info['version'] or '(none recorded yet)'}",
             f"rows           {info['rows']} ({info['flagged']} flagged)",
             f"edited         {info['edited_since_training']} row(s) since the last trained version "
             f"{info['trained_version'] or '(never trained)'}"]
    last = info.get("last_result")
    if last:
        lines.append(f"last score     val {last['val_accuracy'] or '-'}  test {last['test_accuracy'] or '-'}  "
                     f"(run {last['run_id']}, {last['time_utc']})")
    splits = info["splits"]
    lines.append("")
    lines.append(f"{'class':<12}" + "".join(f"{s:>9}" for s in splits))
    for name, counts in info["per_class"].items():
        lines.append(f"{name:<12}" + "".join(f"{counts.get(s, 0):>9}" for s in splits))
    return "\n".join(lines)


def main():  # pragma: no cover
    sys.exit(cli())


# ---- issue #6: the HTML report ----------------------------------------------------------------

@cli.command()
@project_dir
@click.option("--run", "run_id", default="", help="Report on this run id (default: the last one trained).")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default browser afterwards.")
@json_option
def report(directory, run_id, open_page, as_json):
    """Write DIRECTORY/report/index.html: scores over versions, confusion matrices with their images,
    the embedding map, the most suspicious images per class, the latest label changes and the split
    balance. A static page that works offline; sync rewrites it after every training.

    \b
    Example:
        dcloop report demo --open
    """
    from .config import load_config
    from .report import write_report

    path = write_report(directory, load_config(directory), run_id=run_id, progress=say)
    if as_json:
        click.echo(json.dumps({"path": str(path.resolve())}))
    else:
        click.echo(str(path))
    if open_page:
        click.launch(str(path.resolve()))
