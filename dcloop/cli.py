"""The dcloop command line: parse, load the config, call one library function, print.

Exit codes: 0 success (including "nothing changed"), 1 error, 2 usage error,
3 another dcloop process holds the project's lock, 4 the sync ran past [sync] max_minutes and
stopped at a safe point, 5 the lock's holder has run past [sync] max_minutes (it may be hung).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import DcloopError

EXIT_CODES_HELP = ("Exit codes: 0 success (also when nothing changed), 1 error, 2 usage error, 3 project locked, "
                   "4 stopped at [sync] max_minutes, 5 the lock's holder ran past max_minutes.")


class DcloopGroup(click.Group):
    """Turns a DcloopError anywhere below into 'Error: ...' and its exit code, in one place."""

    def invoke(self, ctx):
        from .fsutil import disk_error
        try:
            return super().invoke(ctx)
        except DcloopError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except OSError as e:  # a full disk or a read-only folder outside the atomic writes (links, folders)
            error = disk_error(e)
            if error is None:
                raise
            click.echo(f"Error: {error}", err=True)
            ctx.exit(error.exit_code)


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
@click.option("--xlsx", is_flag=True, help="Keep the table in labels.xlsx, with a picture of each image, "
              "instead of labels.csv.")
@click.option("--sheet", help="A Google Sheet url or key to use as the label table instead of labels.csv.")
@click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path),
              help="Service-account JSON key for --sheet.")
def init(directory, folder, csv_file, classes, xlsx, sheet, credentials):
    """Create a project in DIRECTORY from an image folder tree or a CSV of urls and labels.

    \b
    Examples:
        dcloop init roman --from-folder data/roman-numerals
        dcloop init pets --from-csv pets.csv --classes cat,dog
        dcloop init roman --xlsx --from-folder data/roman-numerals
    """
    from .config import new_config
    from .project import init_project, rows_from_csv, rows_from_folder

    if bool(folder) == bool(csv_file):
        raise click.UsageError("give exactly one of --from-folder PATH or --from-csv FILE.")
    if xlsx and sheet:
        raise click.UsageError("give at most one of --xlsx and --sheet.")
    rows = rows_from_folder(folder) if folder else rows_from_csv(csv_file)
    table_settings = ({"backend": "xlsx"} if xlsx else
                      {"backend": "gsheet", "sheet": sheet,
                       "credentials": str(credentials.resolve()) if credentials else None} if sheet else {})
    config = new_config({"table": table_settings})
    class_list = [c.strip() for c in classes.split(",")] if classes else None
    source = folder if folder else csv_file.parent
    config, table, findings = init_project(directory, rows, class_list, config, sources=[source])
    for finding in findings:
        say(finding)
    counts = table["split"].value_counts()
    click.echo(f"Created {directory} with {len(table)} rows "
               f"({', '.join(f'{counts[s]} {s}' for s in counts.index)}) and classes {', '.join(config.project.classes)}.")
    click.echo(f"Next: edit the labels in {table_name(config)}, then run: dcloop sync {directory}")


def table_name(config) -> str:
    return f"the sheet {config.table.sheet}" if config.table.backend == "gsheet" else config.table.path


def watch_options(function):
    """--watch, --interval, --settle for sync (issue 5)."""
    function = click.option("--settle", type=click.FloatRange(min=0), default=10.0, show_default=True,
                            help="With --watch: seconds the table must stay unchanged before a cycle.")(function)
    function = click.option("--interval", type=click.FloatRange(min=0.05), default=5.0, show_default=True,
                            help="With --watch: seconds between looks at the table.")(function)
    return click.option("--watch", is_flag=True, help="Keep running; sync whenever labels or splits change.")(function)


@cli.command()
@project_dir
@click.option("--force", is_flag=True, help="Retrain even when nothing changed.")
@click.option("--refetch", is_flag=True,
              help="Ask every http image's server whether the image changed at its url (a conditional GET).")
@click.option("--epochs", type=int, help="Override [model] epochs (changes the model fingerprint).")
@click.option("--device", help="Train on this torch device (auto, cpu, cuda); default from dcloop.toml.")
@click.option("--quick", is_flag=True,
              help="Train a tenth of the epochs for fast feedback; the result row is marked kind=quick.")
@click.option("--seeds", type=click.IntRange(min=1),
              help="Train under N seeds (seed, seed+1, ...) and record the mean and spread of the scores.")
@click.option("--crossfit", type=click.IntRange(min=0), metavar="K",
              help="Override [suspicion] crossfit: K networks judge the train rows' labels out of sample "
                   "(K-1 more trainings); 0 off.")
@click.option("--accept-row-drop", is_flag=True,
              help="Accept a table that lacks many rows of the last version (rows deleted on purpose).")
@json_option
@watch_options
def sync(directory, force, refetch, epochs, device, quick, seeds, crossfit, accept_row_drop, as_json, watch, interval,
         settle):
    """Pull the labels, retrain the fixed model if anything changed, write predictions back.

    With --watch, keep going: sync again whenever the labels or splits change (see the README, "Running unattended").

    \b
    Examples:
        dcloop sync demo
        dcloop sync demo --watch --interval 5 --settle 30
        dcloop sync demo --seeds 3
        dcloop sync demo --crossfit 2      # e.g. nightly: train labels judged out of sample
    """
    from .config import load_config
    from .lock import project_lock
    from .sync import sync as run_sync

    check_watch_options(watch)
    config = load_config(directory, {"model": {"epochs": epochs, "device": device, "seeds": seeds},
                                     "suspicion": {"crossfit": crossfit}})
    if watch and accept_row_drop:
        raise click.UsageError("--accept-row-drop is for one sync: run it without --watch, then start the watch.")
    if watch:
        return watch_project(directory, config, force, interval, settle, as_json, quick, refetch)
    with project_lock(directory, config, "dcloop sync"):
        report = run_sync(directory, config, force=force, progress=say, quick=quick, refetch=refetch,
                          accept_row_drop=accept_row_drop)
    print_sync_report(report, as_json, directory, config)


def print_sync_report(report, as_json: bool, directory: Path, config, marked: set[str] = frozenset(),
                      mark_note: str = "") -> None:
    """What a sync found, for every project and the demo alike: JSON, or the summary's lines."""
    if as_json:
        click.echo(json.dumps({**report.to_json(), "scores": scores_json(report.result),
                               "next": next_step(directory, config)}))
        return
    for line in sync_summary(report, directory, config, marked, mark_note):
        click.echo(line)


def sync_summary(report, directory: Path, config, marked: set[str] = frozenset(), mark_note: str = "") -> list[str]:
    """The score and its noise, the suspects and flags by kind, the rows to look at first, the next step.

    ``marked`` are urls shown with a '*' (the demo's flipped labels), explained by ``mark_note``.
    """
    findings = report.findings
    lines = [report.message] + score_lines(report) + flag_summary(report.flagged)
    if findings is not None and findings.flag_counts:
        kinds = ", ".join(f"{kind} {n}" for kind, n in findings.flag_counts.items())
        lines.append(f"{findings.suspects} suspect row(s) (label?: the model doubts the label); "
                     f"flagged rows by kind: {kinds}.")
    if findings is not None and findings.top:
        lines += ["", f"The {len(findings.top)} rows to look at first"
                  + (f" (* = {mark_note})" if mark_note else "") + ":"]
        lines += top_lines(findings.top, marked)
        if marked:
            hits = sum(row["url"] in marked for row in findings.top)
            lines.append(f"{hits} of these {len(findings.top)} rows are marked *: {mark_note}.")
    lines += ["", next_step(directory, config)]
    page = directory / "report" / "index.html"
    if page.exists():
        lines.append(f"Plots, the confusion matrices and the embedding map: open {page} in a browser.")
    return lines


def top_lines(top: list[dict], marked: set[str], width: int = 72) -> list[str]:
    """One line per row: id, label, the model's class, the flags (table text made printable)."""
    from .table import shown
    cells = [[shown(r["id"]), shown(r["label"]) or "(blank)", shown(r["prediction"]) or "-",
              shown(r["flags"]) or f"suspicion {r['suspicion']}"] for r in top]
    wide = [max([len(h)] + [len(c[k]) for c in cells]) for k, h in enumerate(("id", "label", "model"))]
    lines = ["   " + "  ".join(h.ljust(w) for h, w in zip(("id", "label", "model"), wide)) + "  flags"]
    for row, c in zip(top, cells):
        flags = c[3] if len(c[3]) <= width else c[3][:width - 3] + "..."
        mark = "*" if row["url"] in marked else " "
        lines.append(f" {mark} " + "  ".join(v.ljust(w) for v, w in zip(c[:3], wide)) + f"  {flags}")
    return lines


def score_lines(report) -> list[str]:
    """'Score: val 0.647 (was 0.683, -0.036; within the ±0.041 noise of 813 rows), test ...' and the quick note."""
    parts = [f"{split} {describe_score(found)}" for split, found in scores_json(report.result).items()]
    lines = [f"Score: {', '.join(parts)}."] if parts else []
    if report.quick:
        lines.append("A quick run (a tenth of the epochs): its score is for a first look; "
                     "without --quick the full training scores the labels.")
    return lines


def scores_json(result: dict) -> dict:
    from .effect import score_noise
    found = {split: score_noise(result, split) for split in ("val", "test")} if result else {}
    return {split: f for split, f in found.items() if f is not None}


def describe_score(found: dict) -> str:
    """'0.647 (was 0.683, -0.036; within the ±0.032 noise of 813 rows)', or '0.647 (±0.032 noise of 813 rows)'."""
    if found["change"] is None:
        return f"{found['score']:.3f} (±{found['noise']:.3f} {found['basis']})"
    where = "within" if found["within_noise"] else "beyond"
    return (f"{found['score']:.3f} (was {found['was']:.3f}, {found['change']:+.3f}; "
            f"{where} the ±{found['noise']:.3f} {found['basis']})")


def next_step(directory: Path, config) -> str:
    """What to open and edit, then which command."""
    where = table_name(config) if config.table.backend == "gsheet" else directory / config.table.path
    order = "rows needing a look are at the top" if config.suspicion.sort else "sort by suspicion"
    return (f"Next: open {where} ({order}), fix the labels you disagree with, "
            f"then run: dcloop sync {directory}")


VALUE_KINDS = ("unknown-label", "unknown-split")  # name the cell's value, not only the row


def flag_summary(flagged: dict[str, list[str]], shown: int = 8) -> list[str]:
    """One line per kind of problem: how many rows, and which ids (with the value, for unknown ones)."""
    from .table import flag_kind, shown as printable
    kinds: dict[str, list[str]] = {}
    for row_id, reasons in flagged.items():
        for reason in reasons:  # ids come from the table: keep control characters off the terminal
            kind = flag_kind(reason)
            value = f" {reason[len(kind) + 1:]}" if kind in VALUE_KINDS else ""  # made printable by validate
            kinds.setdefault(kind, []).append(printable(row_id) + value)
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
    from .config import CONFIG_FILE, load_config
    from .errors import ConfigError
    from .quickstart import create_demo
    from .sync import sync as run_sync

    if (directory / CONFIG_FILE).exists():
        raise ConfigError(f"{directory} is already a dcloop project: run dcloop sync {directory}, "
                          f"or choose a new folder for the demo.")
    say(f"writing 1,797 digit images and a label table to {directory}")
    create_demo(directory, epochs=epochs)
    config = load_config(directory)
    report = run_sync(directory, config, progress=say)
    flipped = set(pd_read(directory / "flipped_labels.csv")["url"])
    print_sync_report(report, as_json, directory, config, flipped, "a label the demo flipped on purpose")


def pd_read(path: Path):
    import pandas as pd
    return pd.read_csv(path, dtype=str, keep_default_na=False)


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


@cli.command()
@project_dir
@click.option("--repair", is_flag=True,
              help="Fix what is safe (takes the project's lock); never touches the label table or the results.")
@json_option
def doctor(directory, repair, as_json):
    """Check the project's state: settings, table, label versions, runs, caches, the lock file, leftover
    temporary files. One line per finding (ok, problem, repaired); exit 1 while a problem remains.

    \b
    Examples:
        dcloop doctor demo
        dcloop doctor demo --repair
    """
    from .doctor import doctor as run_doctor

    found = run_doctor(directory, repair)
    if as_json:
        click.echo(json.dumps(found.to_json()))
    else:
        for finding in found.findings:
            click.echo(finding.line())
    click.get_current_context().exit(0 if found.healthy else 1)


def format_status(info: dict) -> str:
    counts = info.get("flag_counts") or {}
    flagged = "flagged: " + (", ".join(f"{kind} {n}" for kind, n in counts.items()) if counts else "none")
    lines = [f"label version  {info['version'] or '(none recorded yet)'}",
             f"rows           {info['rows']} ({flagged}; {info['flagged']} left out of training)",
             f"edited         {info['edited_since_training']} row(s) since the last trained version "
             f"{info['trained_version'] or '(never trained)'}"]
    for title, last in (("last score  ", info.get("last_result")), ("last quick  ", info.get("last_quick_result"))):
        if last:
            lines.append(f"{title}   val {last['val_accuracy'] or '-'}  test {last['test_accuracy'] or '-'}  "
                         f"(run {last['run_id']}, {last['time_utc']})")
    splits = info["splits"]
    lines.append("")
    lines.append(f"{'class':<12}" + "".join(f"{s:>9}" for s in splits))
    for name, counts in info["per_class"].items():
        lines.append(f"{name:<12}" + "".join(f"{counts.get(s, 0):>9}" for s in splits))
    return "\n".join(lines + format_lock(info.get("lock")) + format_expert(info.get("expert")))


def format_lock(lock: dict | None) -> list[str]:
    """The status line for a held lock: who, since when, and whether it overran [sync] max_minutes."""
    if lock is None:
        return []
    age = "" if lock.get("age_minutes") is None else f", {lock['age_minutes']:.0f} minutes ago"
    line = (f"lock           held by pid {lock.get('pid', '?')} on {lock.get('host', '?')} "
            f"({lock.get('command', 'dcloop')}), started {lock.get('started_utc', '?')}{age}")
    if lock["overrun"]:
        line += (f": longer than [sync] max_minutes = {lock['max_minutes']:g}, it may be hung "
                 f"(ps -p {lock.get('pid', '?')}; kill {lock.get('pid', '?')} if it is stuck)")
    return [line]


def main():  # pragma: no cover
    sys.exit(cli())


# --- running unattended (watch mode, the lock) and the label history commands ---

def check_watch_options(watch: bool) -> None:
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [f"--{p}" for p in ("interval", "settle") if ctx.get_parameter_source(p) == ParameterSource.COMMANDLINE]
    if given and not watch:
        raise click.UsageError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --watch.")


def watch_project(directory: Path, config, force: bool, interval: float, settle: float, as_json: bool,
                  quick: bool = False, refetch: bool = False) -> None:
    """sync --watch: hold the lock, loop until SIGINT/SIGTERM, one summary (and JSON) per cycle."""
    import signal
    import threading

    from .lock import project_lock
    from .watch import watch

    stop = threading.Event()

    def on_signal(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: leave now; every write is atomic
        say(f"{signal.Signals(signum).name}: stopping at the next safe point (send it again to stop at once)")
        stop.set()

    def on_cycle(cycle) -> None:
        say(cycle.summary())
        if as_json:
            click.echo(json.dumps(cycle.to_json()))

    with project_lock(directory, config, "dcloop sync --watch"):
        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            say(f"watching {table_name(config)} every {interval:g}s; a change is synced once it has "
                f"settled for {settle:g}s. Ctrl-C stops.")
            cycles = watch(directory, config, stop, on_cycle, interval, settle, force, say, quick=quick,
                           refetch=refetch)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
    say(f"stopped after {cycles} cycle(s)")


def version_argument(name: str):
    return click.argument(name, metavar=name.upper())


def project_argument(function):
    return click.argument("directory", type=click.Path(file_okay=False, path_type=Path))(function)


@cli.command(name="log")
@project_dir
@json_option
def log_command(directory, as_json):
    """One line per label version, newest first: id, time, rows changed, the score trained under it.

    \b
    Example:
        dcloop log demo
    """
    from .config import load_config
    from .versions import log

    entries = log(directory, load_config(directory))
    if as_json:
        click.echo(json.dumps(entries))
    elif not entries:
        click.echo(f"No label versions recorded in {directory} yet; run: dcloop sync {directory}")
    else:
        click.echo(f"{'version':<12}  {'recorded (UTC)':<20}  {'rows':>6}  {'changes':<28}  "
                   f"{'val':>6}  {'test':>6}  run")
        for e in entries:
            click.echo(f"{e['version']:<12}  {e['time_utc']:<20}  {e['rows']:>6}  {describe_changes(e):<28}  "
                       f"{e['val_accuracy'] or '-':>6}  {e['test_accuracy'] or '-':>6}  {e['run_id'] or '-'}"
                       + (f"  {describe_effect(e)}" if describe_effect(e) else ""))
            for r in e.get("reevals", []):  # old models scored again on this version's split
                click.echo(f"{'':<12}  {r['time_utc']:<20}  {'':>6}  {'reeval of run ' + r['reeval_of']:<28}  "
                           f"{r['val_accuracy'] or '-':>6}  {r['test_accuracy'] or '-':>6}  {r['run_id']}")


def describe_changes(counts: dict) -> str:
    parts = [f"+{counts['added']} rows" if counts["added"] else "",
             f"-{counts['removed']} rows" if counts["removed"] else "",
             f"{counts['label_changed']} labels" if counts["label_changed"] else "",
             f"{counts['split_changed']} splits" if counts["split_changed"] else ""]
    return ", ".join(p for p in parts if p) or "urls only"


@cli.command()
@project_argument
@version_argument("a")
@version_argument("b")
@json_option
def diff(directory, a, b, as_json):
    """The rows whose label, split or url differ between label versions A and B (unique prefixes work).

    \b
    Example:
        dcloop diff demo 3fa2c1 9b07d4
    """
    from .versions import diff_versions

    a, b, changes = diff_versions(directory, a, b)
    if as_json:
        click.echo(json.dumps({"a": a, "b": b, "rows": changes.to_dict("records")}))
        return
    print_changes(changes, click.echo)
    say(f"{len(changes)} row(s) differ from version {a} to {b}")


def print_changes(changes, echo, limit: int | None = None) -> None:
    """One line per row: id, change, url, and label and split as 'before -> after' where they differ."""
    def cell(row, column):
        before, after = row[f"{column}_before"] or "-", row[f"{column}_after"] or "-"
        return before if before == after else f"{before} -> {after}"

    rows = changes.to_dict("records")
    if rows:
        echo(f"{'id':<12}  {'change':<8}  {'label':<16}  {'split':<16}  url")
    for row in rows[:limit]:
        echo(f"{row['id']:<12}  {row['change']:<8}  {cell(row, 'label'):<16}  {cell(row, 'split'):<16}  "
             f"{cell(row, 'url')}")
    if limit is not None and len(rows) > limit:
        echo(f"... and {len(rows) - limit} more")


@cli.command()
@project_argument
@version_argument("version")
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A new or empty folder to write <split>/<class>/<id>.<ext> into.")
@json_option
def checkout(directory, version, dest, as_json):
    """Copy a label version's images into an ImageFolder tree elsewhere: PATH/<split>/<class>/*.

    \b
    Example:
        dcloop checkout demo 3fa2c1 --to /tmp/demo-3fa2c1
    """
    from .config import load_config
    from .versions import checkout as run_checkout

    done = run_checkout(directory, load_config(directory), version, dest, say)
    if as_json:
        click.echo(json.dumps(done))
        return
    splits = ", ".join(f"{n} {s}" for s, n in done["splits"].items())
    skipped = "; ".join(f"{n} {why}" for why, n in done["skipped"].items())
    click.echo(f"Wrote {done['images']} images of version {done['version']} to {done['path']} ({splits})."
               + (f" Left out: {skipped}." if skipped else ""))


@cli.command()
@project_argument
@version_argument("version")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
def restore(directory, version, yes, as_json):
    """Write a label version's labels and splits back into the table, recorded as a new version.

    Only label and split change (and rows the version had that the table lost are added back);
    dcloop's columns, notes and rows added since are kept. Asks first unless --yes.

    \b
    Example:
        dcloop restore demo 3fa2c1 --yes
    """
    from .config import load_config
    from .lock import project_lock
    from .versions import plan_restore, restore as run_restore

    config = load_config(directory)
    plan = plan_restore(directory, config, version)
    if plan.changes.empty:
        click.echo(f"The table already has the labels and splits of version {plan.version}; nothing to restore.")
        return
    print_changes(plan.changes, lambda line: click.echo(line, err=True), limit=20)
    counts = plan.summary()
    question = (f"Restore version {plan.version} into {table_name(config)}: {counts['label_changed']} label(s) "
                f"and {counts['split_changed']} split(s) change, {counts['added']} row(s) added back. Write?")
    if not yes:
        click.confirm(question, abort=True, err=True)
    with project_lock(directory, config, "dcloop restore"):
        done = run_restore(directory, config, plan)
    if as_json:
        click.echo(json.dumps(done))
        return
    click.echo(f"Restored the labels and splits of version {done['restored']}: {done['rows_written']} row(s) "
               f"written, recorded as version {done['version']}. Run dcloop sync {directory} to retrain.")


# ---- the HTML report ----------------------------------------------------------------

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


@cli.command()
@project_dir
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve on this port of 127.0.0.1 (0: a free one).")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default browser.")
def review(directory, port, open_page):
    """Review the suspects in a local page by keyboard; each decision is written to the table within a second.

    Prints the page's url (it holds a secret token) and serves it on 127.0.0.1 until Ctrl-C, which
    writes the decisions still pending. Keys: a digit or a class's first letters label the row, Enter
    accepts the model's class, k keeps the label (reviewed = ok), x excludes the row, u undoes, arrows move.

    \b
    Example:
        dcloop review demo --open
    """
    from .config import load_config
    from .review_page import serve

    serve(directory, load_config(directory), port, open_page, progress=say, show_url=click.echo)


# --- what a batch of edits did (log), the noise across seeds, model vs expert (status) ---

def describe_effect(entry: dict) -> str:
    """The score change against the previous comparable run, the seeds' spread, and what the edits did."""
    parts = []
    if entry.get("val_change") or entry.get("test_change"):
        parts.append(f"vs run {entry['compared_run']}: val {entry['val_change'] or '-'}, "
                     f"test {entry['test_change'] or '-'}")
    if int(entry.get("seeds") or 1) > 1:
        parts.append(f"{entry['seeds']} seeds: val {entry['val_mean'] or '-'} ± {entry['val_std'] or '-'}, "
                     f"test {entry['test_mean'] or '-'} ± {entry['test_std'] or '-'}")
    if int(entry.get("edits") or 0):
        parts.append(f"{entry['edits']} label edit(s): the new model agrees with {entry['edits_model_agrees']}, "
                     f"the old run had predicted {entry['edits_old_agreed']}")
    return "; ".join(parts)


def format_expert(expert: dict | None, shown: int = 8) -> list[str]:
    """Status lines for the expert column: agreement with the label and the model, the rows to look at."""
    if not expert:
        return []

    def figures(a: dict) -> str:
        if not a["n"]:
            return "no rows to compare"
        kappa = "-" if a["kappa"] is None else f"{a['kappa']:.3f}"
        return f"{a['agree']}/{a['n']} agree ({a['accuracy']:.3f}), kappa {kappa}"

    lines = ["", f"expert         {expert['rows']} row(s) with an expert class",
             f"  vs label     {figures(expert['label'])}",
             f"  vs model     {figures(expert['model'])}"
             + (f" (run {expert['run_id']})" if expert["run_id"] else " (no trained run yet)")]
    differ = [d["id"] for d in expert["differ"]]
    if differ:
        more = f" and {len(differ) - shown} more (--json lists all)" if len(differ) > shown else ""
        lines.append(f"  differ on    {', '.join(differ[:shown])}{more}")
    for bad in expert["bad_cells"]:
        lines.append(f"  row {bad['row']} (id {bad['id']}): expert {bad['value']!r} is not a class")
    for v in expert["by_version"]:
        lines.append(f"  version {v['label_version']} run {v['run_id']}: label {v['expert_label_accuracy'] or '-'} "
                     f"kappa {v['expert_label_kappa'] or '-'}; model {v['expert_model_accuracy'] or '-'} "
                     f"kappa {v['expert_model_kappa'] or '-'} ({v['expert_model_n'] or 0} rows)")
    return lines


# --- the cap and augmentation inside it ---

@cli.command(name="cap")
@project_dir
@click.option("--target", type=click.IntRange(min=1), help="Count against this many rows (default: [project] cap).")
@json_option
def cap_command(directory, target, as_json):
    """Rows per class and split that count against the cap; over it, write cap-suggestions.csv: the rows
    cheapest to drop first (exact duplicates, augmented variants, near duplicates, outliers, the last run's
    flags, then redundant rows of the largest classes), each with its reason.

    \b
    Examples:
        dcloop cap demo
        dcloop cap demo --target 8000 --json
    """
    from .cap import format_counts
    from .config import load_config
    from .lock import project_lock
    from .sync import cap_findings

    config = load_config(directory)
    with project_lock(directory, config, "dcloop cap"):
        findings = cap_findings(directory, config, target, progress=say)
    if as_json:
        click.echo(json.dumps(findings.to_json()))
    elif findings.path is None:
        click.echo(f"{findings.used} labeled rows in train+val, within the cap of {findings.cap} "
                   f"({findings.cap - findings.used} to spare). Per class: {format_counts(findings.counts)}.")
    else:
        click.echo(findings.message())


@cli.command(name="augment")
@project_dir
@click.option("--class", "class_name", help="Make variants of this class's train rows.")
@click.option("--thin", is_flag=True, help="Spread the budget over the classes with fewer train rows than the largest.")
@click.option("--budget", type=int, required=True, help="How many variants (new rows) to make, at most.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same table and seed, same variants.")
@json_option
def augment_command(directory, class_name, thin, budget, seed, as_json):
    """Add seeded variants (small rotations, shifts, scale, thicker or thinner strokes, crops) of labeled
    train rows as new rows: files under DIRECTORY/augmented/<class>/, the source's label and split, and
    the note 'augmented from <id>: <transform>'. The cap is respected: the budget is cut to the room left.

    \b
    Examples:
        dcloop augment demo --thin --budget 200 --seed 1
        dcloop augment demo --class 7 --budget 50
    """
    from .augment import augment
    from .config import load_config
    from .lock import project_lock

    if bool(class_name) == thin:
        raise click.UsageError("give exactly one of --class CLASS or --thin.")
    config = load_config(directory)
    with project_lock(directory, config, "dcloop augment"):
        done = augment(directory, config, budget, class_name, thin, seed, progress=say)
    for message in done.messages:
        say(message)
    if as_json:
        click.echo(json.dumps(done.to_json()))
        return
    per_class = ", ".join(f"{label} {n}" for label, n in done.to_json()["per_class"].items())
    click.echo(f"Added {len(done.rows)} augmented row(s) ({per_class}) under {directory / 'augmented'}. "
               f"Run dcloop sync {directory} to train with them.")


# ---- splits that represent the data, and re-evaluation on the current split ----------

@cli.command()
@project_argument
@click.option("--check", is_flag=True, help="Counts per class and split, duplicates across splits, thin strata.")
@click.option("--rebalance", is_flag=True, help="Propose a stratified split that keeps duplicate groups together.")
@click.option("--val", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="With --rebalance: the share of train+val rows to put in val.")
@click.option("--seed", type=int, help="Seed for the clusters and the choice of rows (default: [model] seed).")
@click.option("--include-test", is_flag=True,
              help="With --rebalance: let test rows move too (test is fixed otherwise).")
@click.option("--test", "test_share", type=click.FloatRange(0, 1, max_open=True),
              help="With --include-test: the share of rows in test (default: today's share).")
@click.option("--apply", "apply_moves", is_flag=True,
              help="With --rebalance: write the moves into the split column and record a new label version.")
@json_option
def split(directory, check, rebalance, val, seed, include_test, test_share, apply_moves, as_json):
    """Check whether the splits represent the data, or rebalance them.

    --check lists rows per class and split, duplicates and augmented variants that sit in different
    splits (leakage), and classes or embedding clusters (from the last run) that train has and
    val or test lacks. --rebalance shows the fewest moves that stratify train/val by class and
    cluster; only --apply writes them, into the split column alone.

    \b
    Examples:
        dcloop split demo --check
        dcloop split demo --rebalance --val 0.2 --seed 1
        dcloop split demo --rebalance --val 0.2 --seed 1 --apply
    """
    from .config import load_config
    from . import splits

    if check == rebalance:
        raise click.UsageError("give exactly one of --check or --rebalance.")
    if not rebalance and (apply_moves or include_test or test_share is not None):
        raise click.UsageError("--apply, --include-test and --test go with --rebalance.")
    if test_share is not None and not include_test:
        raise click.UsageError("--test needs --include-test (test rows never move otherwise).")
    config = load_config(directory)
    if check:
        found = splits.check_splits(directory, config, seed, progress=say)
        click.echo(json.dumps(found) if as_json else splits.describe_check(found))
        return
    proposal = splits.plan(directory, config, val, seed, include_test, test_share, progress=say)
    done = apply_split_moves(directory, config, proposal.moves) if apply_moves else None
    if as_json:
        click.echo(json.dumps({**proposal.to_json(), "applied": done}))
        return
    click.echo(splits.describe_plan(proposal))
    if done is None:
        click.echo("Nothing written. To write these moves into the split column: add --apply." if len(proposal.moves)
                   else "The split is already balanced.")
    else:
        skipped = f"; {done['skipped']} skipped (their split was edited meanwhile)" if done["skipped"] else ""
        click.echo(f"Moved {done['rows_written']} row(s){skipped}; recorded as label version {done['version']}. "
                   f"Scores before and after differ in yardstick: run dcloop reeval {directory}.")


def apply_split_moves(directory, config, moves):
    from .lock import project_lock
    from .splits import apply

    with project_lock(directory, config, "dcloop split --apply"):
        return apply(directory, config, moves)


@cli.command()
@project_argument
@click.option("--runs", "runs", default="all", show_default=True,
              help="Which stored runs: all, 'last N' (or last:N), or comma-separated run ids.")
@json_option
def reeval(directory, runs, as_json):
    """Score the stored models of earlier runs on the current val and test split.

    Each becomes a results row of kind reeval (reeval_of names the run), so scores from before and
    after a split change compare on one yardstick. dcloop log lists them under their version.

    \b
    Examples:
        dcloop reeval demo
        dcloop reeval demo --runs "last 3"
    """
    from .config import load_config
    from .lock import project_lock
    from .reeval import reeval as run_reeval

    config = load_config(directory)
    with project_lock(directory, config, "dcloop reeval"):
        rows = run_reeval(directory, config, runs, progress=say)
    if as_json:
        click.echo(json.dumps(rows))
        return
    click.echo(f"{'run':<10}  {'val':>7}  {'test':>7}  {'seen':>5}  label version")
    for r in rows:
        click.echo(f"{r['reeval_of']:<10}  {r['val_accuracy'] or '-':>7}  {r['test_accuracy'] or '-':>7}  "
                   f"{r['reeval_seen']:>5}  {r['label_version']}")
    if any(r["reeval_seen"] != "0" for r in rows):
        click.echo("seen: val/test rows the model trained on (they were in its train split); its score is "
                   "flattered by that many rows.")
