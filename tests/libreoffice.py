"""Drive the real LibreOffice Calc, headless, the way a person opens, edits and saves a table.

Debian's ``libreoffice-calc`` and ``python3-uno`` (installed by .ci/run). The edit runs in the
system Python, which has the ``uno`` module, in a subprocess with its own LibreOffice profile, so
tests never share an office process or a profile. Tests skip with the reason where it is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
TIMEOUT_S = 180


def missing() -> str:
    """Why LibreOffice cannot be driven here ('' when it can)."""
    if not shutil.which("soffice"):
        return "LibreOffice is not installed (apt-get install libreoffice-calc python3-uno)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import uno"], capture_output=True) if Path(SYSTEM_PYTHON).exists() else None
    if probe is None or probe.returncode:
        return "python3-uno is not installed (apt-get install python3-uno)"
    return ""


def edit(path: Path, edits: dict[str, dict[str, str]], key_column: str = "url", profile: Path | None = None) -> None:
    """Open ``path`` in Calc with its default import, set cells, and save it in its own format.

    ``edits`` maps a value of ``key_column`` to {column header: new cell text}: rows are found by
    content, as a person finds them, not by id.
    """
    profile = profile or Path(path).parent / ".lo-profile"
    result = subprocess.run([SYSTEM_PYTHON, "-c", EDIT_SCRIPT, str(Path(path).resolve()), json.dumps(edits), key_column,
                             profile.resolve().as_uri()], capture_output=True, text=True, timeout=TIMEOUT_S)
    if result.returncode:
        raise RuntimeError(f"LibreOffice edit failed: {result.stdout}\n{result.stderr}")


EDIT_SCRIPT = r'''
import json, os, subprocess, sys, time, uuid
import uno
from com.sun.star.beans import PropertyValue

path, edits, key_column, profile = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]
pipe = "dcloop" + uuid.uuid4().hex
office = subprocess.Popen(["soffice", "--headless", "--invisible", "--norestore", "--nologo",
                           f"-env:UserInstallation={profile}", f"--accept=pipe,name={pipe};urp;"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def prop(name, value):
    p = PropertyValue(); p.Name = name; p.Value = value; return p

try:
    resolver = uno.getComponentContext().ServiceManager.createInstanceWithContext(
        "com.sun.star.bridge.UnoUrlResolver", uno.getComponentContext())
    for _ in range(240):
        try:
            context = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
            break
        except Exception:
            time.sleep(0.5)
    else:
        raise SystemExit("LibreOffice did not start")
    desktop = context.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", context)
    url = uno.systemPathToFileUrl(path)
    document = desktop.loadComponentFromURL(url, "_blank", 0, (prop("Hidden", True),))
    sheet = document.Sheets.getByIndex(0)
    used = sheet.createCursor(); used.gotoEndOfUsedArea(False)
    rows, cols = used.RangeAddress.EndRow + 1, used.RangeAddress.EndColumn + 1
    header = [sheet.getCellByPosition(c, 0).String for c in range(cols)]
    key = header.index(key_column)
    found = set()
    for r in range(1, rows):
        value = sheet.getCellByPosition(key, r).String
        for column, text in edits.get(value, {}).items():
            sheet.getCellByPosition(header.index(column), r).String = text
            found.add(value)
    if found != set(edits):
        raise SystemExit(f"rows not found: {sorted(set(edits) - found)}")
    document.store()  # File > Save, "Use current format"
    document.close(True)
finally:
    try:
        desktop.terminate()
    except Exception:
        pass
    try:
        office.wait(30)
    except Exception:
        office.kill()
'''


def convert(path: Path, profile: Path | None = None) -> Path:
    """Open ``path`` with Calc's default import and save it as CSV again, without edits."""
    profile = profile or Path(path).parent / ".lo-profile"
    out = Path(path).parent / "lo-out"
    subprocess.run(["soffice", "--headless", f"-env:UserInstallation={profile.resolve().as_uri()}", "--convert-to",
                    "csv", "--outdir", str(out), str(path)], check=True, capture_output=True, timeout=TIMEOUT_S)
    return out / Path(path).name


if __name__ == "__main__":  # pragma: no cover - by hand: python -m tests.libreoffice FILE '{"url": {"label": "x"}}'
    edit(Path(sys.argv[1]), json.loads(sys.argv[2]))
