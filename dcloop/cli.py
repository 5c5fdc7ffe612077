"""The dcloop command line: parse, load the config, call one library function, print.

Commands are grouped by workflow: set up, the loop, the history of the labels, the data-centric
moves. DIR is the project folder: the current folder when left out, except where versions follow it
(diff, checkout, restore). ``with_project`` loads DIR's config (and takes the lock) for every
command; what is printed for a person is made in dcloop.render.

Exit codes: 0 success (including "nothing changed"), 1 error, 2 usage error,
3 another dcloop process holds the project's lock, 4 the sync ran past [sync] max_minutes and
stopped at a safe point, 5 the lock's holder has run past [sync] max_minutes (it may be hung).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import DcloopError
from .names import fast_schedule_text

# Only click and the standard library at import: a cron run whose sync finds nothing can have changed
# answers before pandas, pydantic or torch are imported (DcloopGroup.main, dcloop.unchanged). Each
# command imports what it needs, dcloop.render's functions included.


EXIT_CODES_HELP = ("Exit codes: 0 success (also when nothing changed), 1 error, 2 usage error, 3 project locked, "
                   "4 stopped at [sync] max_minutes, 5 the lock's holder ran past max_minutes.")

class DcloopGroup(click.Group):
    """Turns a DcloopError anywhere below into 'Error: ...' and its exit code, in one place."""

    def main(self, args=None, *more, **options):
        if args is None:  # a process of its own (the dcloop command, cron); CliRunner passes its args
            from .unchanged import replay
            status = replay(sys.argv[1:])  # not None: nothing can have changed since the last no-change sync
            if status is not None:
                sys.exit(status)
        return super().main(args, *more, **options)

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

def project_argument(function):
    return click.argument("directory", type=click.Path(file_okay=False, path_type=Path))(function)

def version_argument(name: str):
    return click.argument(name, metavar=name.upper())

def json_option(function):
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")(function)

def with_project(lock: str | None = None, check=None):
    """The command gets ``config``, DIR's dcloop.toml; with ``lock`` it runs holding the project's lock.

    Every command that reads a project's settings goes through here, so the lock's holder is named
    the same way ('dcloop cap') and a missing or bad dcloop.toml fails the same way everywhere.
    ``check(**options)`` raises click.UsageError for options that do not go together, before the
    config is read or the lock taken.
    """
    def decorate(command):
        @functools.wraps(command)
        def run(directory, **options):
            from .config import load_config
            if check is not None:
                check(**options)
            config = load_config(directory)
            if lock is None:
                return command(directory, config=config, **options)
            from .lock import project_lock
            with project_lock(directory, config, f"dcloop {lock}"):
                return command(directory, config=config, **options)
        return run
    return decorate

def echo_lines(lines: list[str], err: bool = False) -> None:
    for line in lines:
        click.echo(line, err=err)

def echo_json(value) -> None:
    click.echo(json.dumps(value))

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

def main():  # pragma: no cover
    sys.exit(cli())


# --- set up: a project, the demo, a check of its state ---

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
    from .render import table_name

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


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="dcloop-demo",
                required=False)
@click.option("--epochs", type=click.IntRange(min=1), default=15, show_default=True, help="Training epochs for the demo.")
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


# --- the loop: sync once or watching, and what it found ---

def watch_options(function):
    """--watch, --interval, --settle for sync."""
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
@click.option("--epochs", type=click.IntRange(min=1), help="Override [model] epochs (changes the model fingerprint).")
@click.option("--device", help="Train on this torch device (auto, cpu, cuda); default from dcloop.toml.")
@click.option("--quick", is_flag=True,
              help="Train a tenth of the epochs for fast feedback; the result row is marked kind=quick.")
@click.option("--fast", is_flag=True,
              help=f"Train on the fast schedule ({fast_schedule_text()}; these replace [model] batch_size, "
                   "learning_rate and epochs) for iterating between full trainings: near the recipe's accuracy "
                   "in under a third of its time; the result row is marked kind=fast.")
@click.option("--seeds", type=click.IntRange(min=1),
              help="Train under N seeds (seed, seed+1, ...) and record the mean and spread of the scores.")
@click.option("--crossfit", type=click.IntRange(min=0), metavar="K",
              help="Override [suspicion] crossfit: networks trained on K folds of the train rows judge their "
                   "labels out of sample (K x crossfit_repeats short networks); 0 off.")
@click.option("--accept-row-drop", is_flag=True,
              help="Accept a table that lacks many rows of the last version (rows deleted on purpose).")
@json_option
@watch_options
def sync(directory, force, refetch, epochs, device, quick, fast, seeds, crossfit, accept_row_drop, as_json, watch,
         interval, settle):
    """Pull the labels, retrain the fixed model if anything changed, write predictions back.

    With --watch, keep going: sync again whenever the labels or splits change (see the README, "Running unattended").

    \b
    Examples:
        dcloop sync demo
        dcloop sync demo --watch --interval 5 --settle 30
        dcloop sync demo --seeds 3
        dcloop sync demo --fast            # between full trainings: a third of the time
        dcloop sync demo --crossfit 2      # e.g. nightly: train labels judged out of sample
    """
    from .config import load_config
    from .lock import project_lock
    from .sync import sync as run_sync
    from .unchanged import Recorder

    check_watch_options(watch)
    check_schedule_options(quick, fast, epochs)
    recorder = Recorder.begin(directory, as_json) if plain_sync() else None  # before dcloop.toml is read
    config = load_config(directory, {"model": {"epochs": epochs, "device": device, "seeds": seeds},
                                     "suspicion": {"crossfit": crossfit}})
    if watch and accept_row_drop:
        raise click.UsageError("--accept-row-drop is for one sync: run it without --watch, then start the watch.")
    if watch:
        return watch_project(directory, config, force, interval, settle, as_json, quick, refetch, fast)
    with project_lock(directory, config, "dcloop sync"):  # removes the last no-change sync's stamp
        if recorder:
            recorder.look(config)
        report = run_sync(directory, config, force=force, progress=recorder.heard(say) if recorder else say,
                          quick=quick, refetch=refetch, accept_row_drop=accept_row_drop, fast=fast)
        lines = sync_report_lines(report, as_json, directory, config)
        if recorder:  # nothing changed, owed or written: the next plain sync may print these lines again
            recorder.finish(config, report, lines)
    echo_lines(lines)


def plain_sync() -> bool:
    """Whether this is ``dcloop sync [DIR] [--json]`` with no other option: the only sync a stamp answers."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return all(ctx.get_parameter_source(name) == ParameterSource.DEFAULT
               for name in ctx.params if name not in ("directory", "as_json"))


def check_watch_options(watch: bool) -> None:
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [f"--{p}" for p in ("interval", "settle") if ctx.get_parameter_source(p) == ParameterSource.COMMANDLINE]
    if given and not watch:
        raise click.UsageError(f"{' and '.join(given)} {'needs' if len(given) == 1 else 'need'} --watch.")


def check_schedule_options(quick: bool, fast: bool, epochs: int | None) -> None:
    from .config import schedule_of
    try:
        schedule_of(quick, fast)
    except DcloopError as e:  # the library's own rule, as a usage error
        raise click.UsageError(str(e)) from e
    if fast and epochs is not None:
        raise click.UsageError("--fast sets its own epochs: drop --epochs, or drop --fast to train the recipe "
                               "with your epochs.")


def watch_project(directory: Path, config, force: bool, interval: float, settle: float, as_json: bool,
                  quick: bool = False, refetch: bool = False, fast: bool = False) -> None:
    """sync --watch: hold the lock, loop until SIGINT/SIGTERM, one summary (and JSON) per cycle."""
    import signal
    import threading

    from .lock import project_lock
    from .render import table_name
    from .signals import stop_signals_to
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

    with project_lock(directory, config, "dcloop sync --watch"), stop_signals_to(on_signal):
        say(f"watching {table_name(config)} every {interval:g}s; a change is synced once it has "
            f"settled for {settle:g}s. Ctrl-C stops.")
        cycles = watch(directory, config, stop, on_cycle, interval, settle, force, say, quick=quick,
                       refetch=refetch, fast=fast)
    say(f"stopped after {cycles} cycle(s)")


def print_sync_report(report, as_json: bool, directory: Path, config, marked: set[str] = frozenset(),
                      mark_note: str = "") -> None:
    """What a sync found, for every project and the demo alike: JSON, or the summary's lines."""
    echo_lines(sync_report_lines(report, as_json, directory, config, marked, mark_note))


def sync_report_lines(report, as_json: bool, directory: Path, config, marked: set[str] = frozenset(),
                      mark_note: str = "") -> list[str]:
    """The lines print_sync_report prints."""
    from .render import next_step, scores_json, sync_summary

    if as_json:
        return [json.dumps({**report.to_json(), "scores": scores_json(report.result),
                            "next": next_step(directory, config)})]
    return sync_summary(report, directory, config, marked, mark_note)


@cli.command()
@project_dir
@json_option
@with_project()
def status(directory, config, as_json):
    """Label version, rows per split and class, edits since the last training, the last score.

    \b
    Example:
        dcloop status demo
    """
    from .render import format_status
    from .status import project_status

    info = project_status(directory, config)
    echo_json(info) if as_json else click.echo(format_status(info))


@cli.command()
@project_dir
@click.option("--run", "run_id", default="", help="Report on this run id (default: the last one trained).")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default browser afterwards.")
@json_option
@with_project()
def report(directory, config, run_id, open_page, as_json):
    """Write DIRECTORY/report/index.html: scores over versions, confusion matrices with their images,
    the embedding map, the most suspicious images per class, the latest label changes and the split
    balance. A static page that works offline; sync rewrites it after every training.

    \b
    Example:
        dcloop report demo --open
    """
    from .report import write_report

    path = write_report(directory, config, run_id=run_id, progress=say)
    echo_json({"path": str(path.resolve())}) if as_json else click.echo(str(path))
    if open_page:
        click.launch(str(path.resolve()))


@cli.command()
@project_dir
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve on this port of 127.0.0.1 (0: a free one).")
@click.option("--open", "open_page", is_flag=True, help="Open the page in the default browser.")
@with_project()
def review(directory, config, port, open_page):
    """Review the suspects in a local page by keyboard; each decision is written to the table within a second.

    Prints the page's url (it holds a secret token) and serves it on 127.0.0.1 until Ctrl-C (or SIGTERM),
    which writes the decisions still pending. Keys: a digit or a class's first letters label the row, Enter
    accepts the model's class, k keeps the label (reviewed = ok), x excludes the row, u undoes, arrows move.

    \b
    Example:
        dcloop review demo --open
    """
    from .review_page import serve

    serve(directory, config, port, open_page, progress=say, show_url=click.echo)


# --- the history of the labels ---

@cli.command(name="log")
@project_dir
@json_option
@with_project()
def log_command(directory, config, as_json):
    """One line per label version, newest first: id, time, rows changed, the score trained under it.

    \b
    Example:
        dcloop log demo
    """
    from .render import log_lines
    from .versions import log

    entries = log(directory, config)
    echo_json(entries) if as_json else echo_lines(log_lines(entries, directory))


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
    from .render import change_lines
    from .versions import diff_versions

    a, b, changes = diff_versions(directory, a, b)
    if as_json:
        click.echo(json.dumps({"a": a, "b": b, "rows": changes.to_dict("records")}))
        return
    echo_lines(change_lines(changes))
    say(f"{len(changes)} row(s) differ from version {a} to {b}")


@cli.command()
@project_argument
@version_argument("version")
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="A new or empty folder to write <split>/<class>/<id>.<ext> into.")
@json_option
@with_project()
def checkout(directory, config, version, dest, as_json):
    """Copy a label version's images into an ImageFolder tree elsewhere: PATH/<split>/<class>/*.

    \b
    Example:
        dcloop checkout demo 3fa2c1 --to /tmp/demo-3fa2c1
    """
    from .render import checkout_line
    from .versions import checkout as run_checkout

    done = run_checkout(directory, config, version, dest, say)
    echo_json(done) if as_json else click.echo(checkout_line(done))


@cli.command()
@project_argument
@version_argument("version")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@with_project()
def restore(directory, config, version, yes, as_json):
    """Write a label version's labels and splits back into the table, recorded as a new version.

    Only label and split change (and rows the version had that the table lost are added back);
    dcloop's columns, notes and rows added since are kept. Asks first unless --yes.

    \b
    Example:
        dcloop restore demo 3fa2c1 --yes
    """
    from .lock import project_lock
    from .render import change_lines, restore_question, restored_line
    from .versions import plan_restore, restore as run_restore

    plan = plan_restore(directory, config, version)
    if plan.changes.empty:
        click.echo(f"The table already has the labels and splits of version {plan.version}; nothing to restore.")
        return
    echo_lines(change_lines(plan.changes, limit=20), err=True)
    if not yes:
        click.confirm(restore_question(plan, config), abort=True, err=True)
    with project_lock(directory, config, "dcloop restore"):
        done = run_restore(directory, config, plan)
    echo_json(done) if as_json else click.echo(restored_line(done, directory))


# --- the data-centric moves: splits, re-evaluation, the cap, augmentation ---

def split_options_go_together(check, rebalance, include_test, test_share, apply_moves, **_) -> None:
    if check == rebalance:
        raise click.UsageError("give exactly one of --check or --rebalance.")
    if not rebalance and (apply_moves or include_test or test_share is not None):
        raise click.UsageError("--apply, --include-test and --test go with --rebalance.")
    if test_share is not None and not include_test:
        raise click.UsageError("--test needs --include-test (test rows never move otherwise).")


@cli.command()
@project_dir
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
@with_project(check=split_options_go_together)
def split(directory, config, check, rebalance, val, seed, include_test, test_share, apply_moves, as_json):
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
    from . import splits
    from .render import describe_check, describe_plan, split_moves_lines

    if check:
        found = splits.check_splits(directory, config, seed, progress=say)
        click.echo(json.dumps(found) if as_json else describe_check(found))
        return
    proposal = splits.plan(directory, config, val, seed, include_test, test_share, progress=say)
    done = apply_split_moves(directory, config, proposal.moves) if apply_moves else None
    if as_json:
        click.echo(json.dumps({**proposal.to_json(), "applied": done}))
        return
    click.echo(describe_plan(proposal))
    echo_lines(split_moves_lines(done, len(proposal.moves), directory))


def apply_split_moves(directory, config, moves):
    from .lock import project_lock
    from .splits import apply

    with project_lock(directory, config, "dcloop split --apply"):
        return apply(directory, config, moves)


@cli.command()
@project_dir
@click.option("--runs", "runs", default="all", show_default=True,
              help="Which stored runs: all, 'last N' (or last:N), or comma-separated run ids.")
@json_option
@with_project(lock="reeval")
def reeval(directory, config, runs, as_json):
    """Score the stored models of earlier runs on the current val and test split.

    Each becomes a results row of kind reeval (reeval_of names the run), so scores from before and
    after a split change compare on one yardstick. dcloop log lists them under their version.

    \b
    Examples:
        dcloop reeval demo
        dcloop reeval demo --runs "last 3"
    """
    from .reeval import reeval as run_reeval
    from .render import reeval_lines

    rows = run_reeval(directory, config, runs, progress=say)
    echo_json(rows) if as_json else echo_lines(reeval_lines(rows))


@cli.command(name="cap")
@project_dir
@click.option("--target", type=click.IntRange(min=1), help="Count against this many rows (default: [project] cap).")
@json_option
@with_project(lock="cap")
def cap_command(directory, config, target, as_json):
    """Rows per class and split that count against the cap; over it, write cap-suggestions.csv: the rows
    cheapest to drop first (exact duplicates, augmented variants, near duplicates, outliers, the last run's
    flags, then redundant rows of the largest classes), each with its reason.

    \b
    Examples:
        dcloop cap demo
        dcloop cap demo --target 8000 --json
    """
    from .cap import cap_findings
    from .render import cap_line

    findings = cap_findings(directory, config, target, progress=say)
    echo_json(findings.to_json()) if as_json else click.echo(cap_line(findings))


def one_of_class_or_thin(class_name, thin, **_) -> None:
    if bool(class_name) == thin:
        raise click.UsageError("give exactly one of --class CLASS or --thin.")


@cli.command(name="augment")
@project_dir
@click.option("--class", "class_name", help="Make variants of this class's train rows.")
@click.option("--thin", is_flag=True, help="Spread the budget over the classes with fewer train rows than the largest.")
@click.option("--budget", type=click.IntRange(min=1), required=True, help="How many variants (new rows) to make, at most.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same table and seed, same variants.")
@json_option
@with_project(lock="augment", check=one_of_class_or_thin)
def augment_command(directory, config, class_name, thin, budget, seed, as_json):
    """Add seeded variants (small rotations, shifts, scale, thicker or thinner strokes, crops) of labeled
    train rows as new rows: files under DIRECTORY/augmented/<class>/, the source's label and split, and
    the note 'augmented from <id>: <transform>'. The cap is respected: the budget is cut to the room left.

    \b
    Examples:
        dcloop augment demo --thin --budget 200 --seed 1
        dcloop augment demo --class 7 --budget 50
    """
    from .augment import augment
    from .render import augmented_line

    done = augment(directory, config, budget, class_name, thin, seed, progress=say)
    for message in done.messages:
        say(message)
    echo_json(done.to_json()) if as_json else click.echo(augmented_line(done, directory))
