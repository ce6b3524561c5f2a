"""A sensor node without hardware: the real ``firmware/`` files, copied to a folder that
stands for the board's flash, run by the real MicroPython Unix port, with host fakes of
``machine``, ``network``, ``dht`` and ``ntptime`` in front of them on MICROPYPATH."""
import http.server
import json
import shutil
import signal
import subprocess
import threading
import time

import pytest
import requests

from tools.deploy import ENTRY_POINTS, FIRMWARE, LIBRARY, firmware_files, library
from tools.emulator import DEFAULT_HARDWARE, MICROPYTHON, micropython_env


class Board:
    def __init__(self, flash):
        self.flash = flash
        flash.mkdir()
        for source in FIRMWARE.glob("*.py"):
            shutil.copy(source, flash)
        shutil.copytree(LIBRARY, flash / "lib")  # as make deploy puts it: the board's /lib
        self.hardware_file = flash.parent / "hardware.json"
        self.set(**DEFAULT_HARDWARE)
        self.process = None
        self.extra_path = []
        self.lines = []
        self.changed = threading.Condition()

    def precompile(self):
        """Replace each module by its mpy-cross bytecode, as ``make deploy MPY=1`` does."""
        firmware_files(build_dir=self.flash)
        library(build_dir=self.flash)
        for source in [*self.flash.glob("*.py"), *(self.flash / "lib").rglob("*.py")]:
            if source.name not in ENTRY_POINTS:
                source.unlink()

    def env(self):
        return micropython_env(self.flash, self.hardware_file, self.extra_path)

    def configure(self, **settings):
        (self.flash / "settings.json").write_text(json.dumps(settings))

    def set(self, **hardware):
        """Change the fake hardware while the firmware runs (written whole, then renamed)."""
        state = json.loads(self.hardware_file.read_text()) if self.hardware_file.exists() else {}
        state.update(hardware)
        partial = self.hardware_file.with_suffix(".tmp")
        partial.write_text(json.dumps(state))
        partial.replace(self.hardware_file)

    def start(self, *args, script="main.py"):
        """Run ``script`` as a board runs boot.py and main.py, and as ``make emulate`` does: imported
        from the flash, which is '' on sys.path, so that each module's path is as short as on a board
        (``micropython main.py`` would put the flash's whole path first, and into every module's name)."""
        self.lines = []
        self.process = subprocess.Popen([str(MICROPYTHON), *args, "-c", "import " + script.removesuffix(".py")],
                                        cwd=self.flash, env=self.env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.collector = threading.Thread(target=self._collect, args=(self.process,), daemon=True)
        self.collector.start()
        return self

    def _collect(self, process):
        for line in process.stdout:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, text, timeout=20, count=1):
        """The console so far, once ``text`` has appeared ``count`` times in it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while sum(text in line for line in self.lines) < count:
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self.changed.wait(0.2)):
                    raise AssertionError(f"no {text!r} on the console:\n" + self.console())
                self.changed.wait(min(left, 0.5))
        return self.console()

    def console(self):
        return "\n".join(self.lines)

    def run_to_end(self, *args, script="main.py", timeout=30):
        """Run ``script`` until it exits by itself (a deep sleep, a reset), as one wake of the board."""
        self.start(*args, script=script)
        self.process.wait(timeout=timeout)
        self.collector.join(timeout)  # every line it printed has been read
        return self.console()

    def stop(self):
        """Ctrl-C, as mpremote sends it; then every line it printed has been read."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.collector.join(10)

    def python(self, code):
        """Run a snippet under MicroPython beside the firmware; its output."""
        result = subprocess.run([str(MICROPYTHON), "-c", code], cwd=self.flash, env=self.env(),
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def python_last_line(self, code):
        return self.python(code).splitlines()[-1]


@pytest.fixture
def board(tmp_path):
    node = Board(tmp_path / "flash")
    yield node
    node.stop()


def boot_runs(readings):
    """The seqs of each boot in turn, from readings in stored order: the server shows no
    reader a boot id, but each boot numbers its readings from 1."""
    runs = []
    for reading in readings:
        if reading["seq"] == 1 or not runs:
            runs.append([])
        runs[-1].append(reading["seq"])
    return runs


def node_settings(server_url, token, **overrides):
    """Settings for a fast thermistor node on the test's server."""
    settings = {"wifi_ssid": "lab", "wifi_password": "secret", "server": server_url,
                "device": "kitchen", "token": token, "sensor": "thermistor", "pin": 34,
                "chip": "esp32", "interval": 0.2, "heartbeat": 0.1, "samples": 1, "timeout": 3,
                "watchdog": 30}
    settings.update(overrides)
    return settings


@pytest.fixture
def mqtt_server(mqtt_server):
    """One server subscribed to ``broker`` (the factory in tests/conftest.py, started)."""
    return mqtt_server()


def mqtt_settings(broker, server_url, token, device="kitchen", **overrides):
    """Settings for a fast node that publishes its readings to ``broker`` with its own login
    (and asks ``server_url`` for updates)."""
    password = broker.passwords.get(device) or broker.add_user(device)
    settings = node_settings(server_url, token, device=device, transport="mqtt", mqtt_host="127.0.0.1",
                             mqtt_port=broker.port, mqtt_password=password)
    settings.update(overrides)
    return settings


class Proxy:
    """Stands between the board and the server at ``server_url`` (as nginx does): a real HTTP
    server on loopback, at ``port`` or any free one, and a context manager that stops it.
    Each request is answered by ``answer(method, path, body, forward)``: a (status, headers,
    content) of its own, or what ``forward()`` gives, the server's; None closes the connection
    unanswered. Content that is not bytes is pieces of it, each written as it comes (the
    headers then say its Content-Length)."""

    HOP_BY_HOP = ("connection", "content-length", "transfer-encoding", "date", "server")

    def __init__(self, server_url, answer, port=0):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                answered = answer(self.command, self.path, body, lambda: self.forward(body))
                if answered is None:
                    self.close_connection = True
                    return
                status, headers, content = answered
                if isinstance(content, bytes):
                    headers, content = dict(headers, **{"Content-Length": str(len(content))}), [content]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    for piece in content:
                        self.wfile.write(piece)
                except (BrokenPipeError, ConnectionResetError):  # the board went away (a reset) meanwhile
                    pass

            do_POST = do_GET

            def forward(self, body):
                response = requests.request(self.command, server_url + self.path, data=body, timeout=5,
                                            allow_redirects=False,
                                            headers={name: self.headers[name] for name in
                                                     ("Authorization", "Content-Type") if self.headers[name]})
                headers = {name: value for name, value in response.headers.items()
                           if name.lower() not in Proxy.HOP_BY_HOP}
                return response.status_code, headers, response.content

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()
