"""Put uPlot, the dashboard's chart library, into ``server/static/vendor/``.

It comes from the npm registry by name (``npm pack`` checks its integrity), once, at
set-up; it is not committed and nothing of Node is needed when the server runs.
"""
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile

PACKAGE = "uplot@1.6.32"
FILES = ("dist/uPlot.iife.min.js", "dist/uPlot.min.css")
VENDOR = pathlib.Path(__file__).resolve().parent.parent / "server" / "static" / "vendor"


def main():
    if all((VENDOR / pathlib.Path(name).name).exists() for name in FILES):
        return 0
    if shutil.which("npm") is None:
        print("fetch_assets: npm is needed once to fetch uPlot; install Node.js and npm", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(["npm", "pack", PACKAGE, "--silent", "--pack-destination", work],
                       check=True, stdout=subprocess.DEVNULL)
        archive = next(pathlib.Path(work).glob("*.tgz"))
        VENDOR.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            for name in FILES:
                source = tar.extractfile(f"package/{name}")
                (VENDOR / pathlib.Path(name).name).write_bytes(source.read())
    print(f"fetch_assets: {PACKAGE} is in {VENDOR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
