"""Every line dcloop prints for a person: the sync summary, status, log, diff and the other commands' results.

Pure: dicts and frames in, lines of text out. cli.py prints them; ``--json`` prints the dicts instead.
Text from the table (ids, labels, flags) goes through ``table.shown`` so no control character or
terminal escape reaches the terminal.
"""

from __future__ import annotations

from pathlib import Path

from .effect import score_noise
from .table import flag_kind, shown as printable


def table_name(config) -> str:
    return f"the sheet {config.table.sheet}" if config.table.backend == "gsheet" else config.table.path


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
    cells = [[printable(r["id"]), printable(r["label"]) or "(blank)", printable(r["prediction"]) or "-",
              printable(r["flags"]) or f"suspicion {r['suspicion']}"] for r in top]
    wide = [max([len(h)] + [len(c[k]) for c in cells]) for k, h in enumerate(("id", "label", "model"))]
    lines = ["   " + "  ".join(h.ljust(w) for h, w in zip(("id", "label", "model"), wide)) + "  flags"]
    for row, c in zip(top, cells):
        flags = c[3] if len(c[3]) <= width else c[3][:width - 3] + "..."
        mark = "*" if row["url"] in marked else " "
        lines.append(f" {mark} " + "  ".join(v.ljust(w) for v, w in zip(c[:3], wide)) + f"  {flags}")
    return lines


def score_lines(report) -> list[str]:
    """'Score: val 0.647 (was 0.683, -0.036; within the ±0.041 noise of 813 rows), test ...' and a schedule's note."""
    parts = [f"{split} {describe_score(found)}" for split, found in scores_json(report.result).items()]
    lines = [f"Score: {', '.join(parts)}."] if parts else []
    if report.schedule == "quick":
        lines.append("A quick run (a tenth of the epochs): its score is for a first look; "
                     "without --quick the full training scores the labels.")
    elif report.schedule == "fast":
        lines.append("A fast run (a third of the recipe's time): compared only with fast runs; "
                     "without --fast the full training scores the labels.")
    return lines


def scores_json(result: dict) -> dict:
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


def format_status(info: dict) -> str:
    counts = info.get("flag_counts") or {}
    flagged = "flagged: " + (", ".join(f"{kind} {n}" for kind, n in counts.items()) if counts else "none")
    lines = [f"label version  {info['version'] or '(none recorded yet)'}",
             f"rows           {info['rows']} ({flagged}; {info['flagged']} left out of training)",
             f"edited         {info['edited_since_training']} row(s) since the last trained version "
             f"{info['trained_version'] or '(never trained)'}"]
    for title, last in (("last score  ", info.get("last_result")), ("last quick  ", info.get("last_quick_result")),
                        ("last fast   ", info.get("last_fast_result"))):
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


def describe_changes(counts: dict) -> str:
    parts = [f"+{counts['added']} rows" if counts["added"] else "",
             f"-{counts['removed']} rows" if counts["removed"] else "",
             f"{counts['label_changed']} labels" if counts["label_changed"] else "",
             f"{counts['split_changed']} splits" if counts["split_changed"] else ""]
    return ", ".join(p for p in parts if p) or "urls only"


def change_lines(changes, limit: int | None = None) -> list[str]:
    """One line per row: id, change, url, and label and split as 'before -> after' where they differ."""
    def cell(row, column):
        before, after = row[f"{column}_before"] or "-", row[f"{column}_after"] or "-"
        return before if before == after else f"{before} -> {after}"

    rows = changes.to_dict("records")
    lines = [f"{'id':<12}  {'change':<8}  {'label':<16}  {'split':<16}  url"] if rows else []
    for row in rows[:limit]:
        lines.append(f"{row['id']:<12}  {row['change']:<8}  {cell(row, 'label'):<16}  {cell(row, 'split'):<16}  "
                     f"{cell(row, 'url')}")
    if limit is not None and len(rows) > limit:
        lines.append(f"... and {len(rows) - limit} more")
    return lines


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


def log_lines(entries: list[dict], directory: Path) -> list[str]:
    """dcloop log: one line per label version, newest first, and its re-evaluations under it."""
    if not entries:
        return [f"No label versions recorded in {directory} yet; run: dcloop sync {directory}"]
    lines = [f"{'version':<12}  {'recorded (UTC)':<20}  {'rows':>6}  {'changes':<28}  {'val':>6}  {'test':>6}  run"]
    for e in entries:
        effect = describe_effect(e)
        lines.append(f"{e['version']:<12}  {e['time_utc']:<20}  {e['rows']:>6}  {describe_changes(e):<28}  "
                     f"{e['val_accuracy'] or '-':>6}  {e['test_accuracy'] or '-':>6}  {e['run_id'] or '-'}"
                     + (f"  {effect}" if effect else ""))
        for r in e.get("reevals", []):  # old models scored again on this version's split
            lines.append(f"{'':<12}  {r['time_utc']:<20}  {'':>6}  {'reeval of run ' + r['reeval_of']:<28}  "
                         f"{r['val_accuracy'] or '-':>6}  {r['test_accuracy'] or '-':>6}  {r['run_id']}")
    return lines


def checkout_line(done: dict) -> str:
    splits = ", ".join(f"{n} {s}" for s, n in done["splits"].items())
    skipped = "; ".join(f"{n} {why}" for why, n in done["skipped"].items())
    return (f"Wrote {done['images']} images of version {done['version']} to {done['path']} ({splits})."
            + (f" Left out: {skipped}." if skipped else ""))


def restore_question(plan, config) -> str:
    counts = plan.summary()
    return (f"Restore version {plan.version} into {table_name(config)}: {counts['label_changed']} label(s) "
            f"and {counts['split_changed']} split(s) change, {counts['added']} row(s) added back. Write?")


def restored_line(done: dict, directory: Path) -> str:
    return (f"Restored the labels and splits of version {done['restored']}: {done['rows_written']} row(s) "
            f"written, recorded as version {done['version']}. Run dcloop sync {directory} to retrain.")


def cap_line(findings) -> str:
    from .cap import format_counts
    if findings.path is not None:
        return findings.message()
    return (f"{findings.used} labeled rows in train+val, within the cap of {findings.cap} "
            f"({findings.cap - findings.used} to spare). Per class: {format_counts(findings.counts)}.")


def augmented_line(done, directory: Path) -> str:
    per_class = ", ".join(f"{label} {n}" for label, n in done.to_json()["per_class"].items())
    return (f"Added {len(done.rows)} augmented row(s) ({per_class}) under {directory / 'augmented'}. "
            f"Run dcloop sync {directory} to train with them.")


def split_moves_lines(done: dict | None, moves: int, directory: Path) -> list[str]:
    """What --rebalance did (or would do with --apply)."""
    if done is None:
        return ["Nothing written. To write these moves into the split column: add --apply." if moves
                else "The split is already balanced."]
    skipped = f"; {done['skipped']} skipped (their split was edited meanwhile)" if done["skipped"] else ""
    return [f"Moved {done['rows_written']} row(s){skipped}; recorded as label version {done['version']}. "
            f"Scores before and after differ in yardstick: run dcloop reeval {directory}."]


def reeval_lines(rows: list[dict]) -> list[str]:
    lines = [f"{'run':<10}  {'val':>7}  {'test':>7}  {'seen':>5}  label version"]
    for r in rows:
        lines.append(f"{r['reeval_of']:<10}  {r['val_accuracy'] or '-':>7}  {r['test_accuracy'] or '-':>7}  "
                     f"{r['reeval_seen']:>5}  {r['label_version']}")
    if any(r["reeval_seen"] != "0" for r in rows):
        lines.append("seen: val/test rows the model trained on (they were in its train split); its score is "
                     "flattered by that many rows.")
    return lines


def describe_check(found: dict, shown: int = 20) -> str:
    """The split check as a table and two lists (the first ``shown`` duplicate pairs)."""
    lines = [f"{'class':<12}{'train':>7}{'val':>7}{'test':>7}{'exclude':>9}{'val %':>8}{'test %':>8}"]
    for name, c in found["per_class"].items():
        used = c["train"] + c["val"] + c["test"]
        lines.append(f"{name:<12}{c['train']:>7}{c['val']:>7}{c['test']:>7}{c['exclude']:>9}"
                     f"{percent(c['val'], used):>8}{percent(c['test'], used):>8}")
    lines.append("")
    leaks = found["leakage"]
    lines.append(f"Duplicates across splits (leakage): {len(leaks) or 'none'}")
    for p in leaks[:shown]:
        lines.append(f"  {p['kind']:<9} {p['a']} ({p['a_split']}, {p['a_label']})  {p['b']} ({p['b_split']}, "
                     f"{p['b_label']})")
    if len(leaks) > shown:
        lines.append(f"  ... and {len(leaks) - shown} more (--json lists all)")
    thin = found["thin"]
    lines.append(f"Thin or absent in val/test against train: {len(thin) or 'none'}")
    for t in thin:
        what = f"class {t['class']}" + (f" cluster {t['cluster']}" if t["cluster"] is not None else "")
        lines.append(f"  {what:<22} {t['status']:<6} in {t['split']:<4}: {t['seen']} rows where {t['expected']:g} "
                     f"expected ({t['train']} in train)")
    source = found["embeddings_from"]
    lines.append(f"Near duplicates and clusters from run {source}'s embeddings." if source else
                 "No trained run yet: exact duplicates only, no clusters. Run dcloop sync for near duplicates.")
    return "\n".join(lines)


def describe_plan(proposal, shown: int = 40) -> str:
    """dcloop split --rebalance: the moves (the first ``shown``) and the counts per class before and after."""
    moves = proposal.moves
    lines = [f"{len(moves)} row(s) to move."]
    if len(moves):
        lines.append(f"{'id':<14}{'label':<10}{'cluster':>8}  move")
        for r in moves.head(shown).to_dict("records"):
            lines.append(f"{r['id']:<14}{r['label']:<10}{r['cluster']:>8}  {r['from']} -> {r['to']}")
        if len(moves) > shown:
            lines.append(f"... and {len(moves) - shown} more (--json lists all)")
    lines.append("")
    lines.append(f"{'class':<12}{'train':>14}{'val':>14}{'test':>14}")
    for name, before in proposal.before.items():
        after = proposal.after[name]
        lines.append(f"{name:<12}" + "".join(f"{f'{before[s]} -> {after[s]}':>14}" for s in ("train", "val", "test")))
    for p in proposal.stuck:
        lines.append(f"left as is: {p['a']} ({p['a_split']}) and {p['b']} ({p['b_split']}) are {p['kind']} "
                     f"duplicates across a split not being rebalanced; set one to exclude, or use --include-test.")
    return "\n".join(lines)


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"
