"""Reference pages made from the code: every command and option, the configuration keys, the
table's columns and the results columns, as Markdown.

The documentation site (``docs/``, built with MkDocs) puts them where a page says
``<!-- reference: NAME -->`` (see ``docs/hooks.py``), so the reference cannot drift from the code.
``python -m dcloop.reference NAME`` prints one.
"""

from __future__ import annotations

import sys
import typing

import click

PAGES = ("commands", "config", "columns", "results")


def render(name: str) -> str:
    """The Markdown of one reference page (see PAGES)."""
    makers = {"commands": commands, "config": config_keys, "columns": table_columns, "results": result_columns}
    if name not in makers:
        raise KeyError(f"no reference page {name!r}; there are: {', '.join(PAGES)}")
    return makers[name]()


def commands() -> str:
    """Every command of the command line, with its help, usage and options, as click knows them."""
    from .cli import EXIT_CODES_HELP, cli
    out = [f"Every command takes `-h`/`--help`. {EXIT_CODES_HELP}", ""]
    for name in sorted(cli.commands):
        command = cli.commands[name]
        # The group's settings (-h as well as --help): click keeps the help option a command first
        # gets, so a context without them would take -h away from the command for the whole process.
        context = click.Context(command, info_name=f"dcloop {name}", **cli.context_settings)
        out += [f"## `dcloop {name}`", "", "```", command.get_usage(context).removeprefix("Usage: "), "```", "",
                help_markdown(command.help or ""), ""]
        rows = [option_row(p) for p in command.params if isinstance(p, click.Option)]
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        if arguments:
            out += ["Arguments: " + ", ".join(f"`{a.human_readable_name}`" + ("" if a.required else " (optional)")
                                              for a in arguments), ""]
        if rows:
            out += ["| option | meaning | default |", "|---|---|---|", *rows, ""]
    return "\n".join(out)


def help_markdown(text: str) -> str:
    """A command's docstring as Markdown: click's unwrapped blocks (after \\b) become code blocks."""
    out, block = [], False
    for line in click.unstyle(text).splitlines():
        if line.strip() == "\b":
            out.append("```")
            block = True
            continue
        if block and not line.strip():
            out.append("```")
            block = False
        out.append(line.strip() if not block else line.rstrip()[4:] if line.startswith("    ") else line.rstrip())
    if block:
        out.append("```")
    return "\n".join(out).strip()


def option_row(option: click.Option) -> str:
    flags = ", ".join(f"`{o}`" for o in option.opts + option.secondary_opts)
    if not option.is_flag and option.metavar:
        flags += f" `{option.metavar}`"
    elif not option.is_flag:
        flags += f" `{option.type.name.upper()}`"
    plain = isinstance(option.default, (int, float, str)) and option.default != ""  # click's "no default" is a sentinel
    default = f"`{option.default}`" if plain and not option.is_flag else ""
    return f"| {flags} | {cell(option.help or '')} | {default} |"


def cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def config_keys() -> str:
    """Every key of dcloop.toml: section, name, type, default and what it does."""
    from .config import Config
    out = ["Precedence: a command-line flag, then a `DCLOOP_<SECTION>_<KEY>` environment variable, then "
           "`dcloop.toml`, then the default.", ""]
    for section, info in Config.model_fields.items():
        model = info.annotation
        out += [f"## `[{section}]`", "", cell((model.__doc__ or "").strip()), "",
                "| key | type | default | meaning |", "|---|---|---|---|"]
        defaults = model()
        for name, field in model.model_fields.items():
            out.append(f"| `{name}` | {cell(type_name(field.annotation))} | `{getattr(defaults, name)!r}` | {cell(field.description or '')} |")
        out.append("")
    return "\n".join(out)


def type_name(annotation) -> str:
    """A config key's type in words: 'text', 'integer', "'csv' or 'gsheet'", 'list of text'."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return " or ".join(repr(a) for a in args)
    if typing.get_origin(annotation) is list:
        return f"list of {type_name(args[0])}"
    return {str: "text", int: "integer", float: "number", bool: "true or false"}.get(annotation, str(annotation))


def table_columns() -> str:
    """The label table's columns: who owns each and what it holds."""
    from . import table as tbl
    rows = [f"| `{name}` | {owner} | {cell(meaning)} |" for name, (owner, meaning) in tbl.COLUMN_DOCS.items()]
    return "\n".join(["| column | owner | meaning |", "|---|---|---|", *rows, ""])


def result_columns() -> str:
    """The results table's columns, one row per training (or re-evaluation)."""
    from .table import RESULT_COLUMN_DOCS
    rows = [f"| `{name}` | {cell(meaning)} |" for name, meaning in RESULT_COLUMN_DOCS.items()]
    return "\n".join(["| column | meaning |", "|---|---|", *rows, ""])


if __name__ == "__main__":  # pragma: no cover
    print(render(sys.argv[1] if len(sys.argv) > 1 else "commands"))
