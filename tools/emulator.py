"""``make emulate``: MicroPython boards without hardware, for mpremote and the other tools.

Each emulated board listens on a TCP port (``PORT=socket://127.0.0.1:N``) and speaks
MicroPython's REPL protocol as a board does on its serial port: the friendly REPL, the
raw REPL with raw-paste mode, Ctrl-C, soft reset. Behind it runs the real MicroPython
Unix port, with the host fakes in ``tools/fakes/`` for ``machine``, ``network``, ``dht``
and ``ntptime`` and a folder as its flash. At power-on and after ``machine.reset()`` it
runs the deployed ``boot.py`` and ``main.py``, so a node posts to the server like a real one;
a started ``machine.WDT`` left unfed resets it as the hardware watchdog does.
"""
import argparse
import json
import os
import pathlib
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from server import ROOT

FAKES = ROOT / "tools" / "fakes"
MICROPYTHON = pathlib.Path(sys.executable).parent / "micropython"
DEFAULT_HARDWARE = {"wifi": True, "ntp": True, "rssi": -61, "adc": [2048], "fail_reads": 0,
                    "dht": [{"temperature": 21.5, "humidity": 40.0}]}
RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
FRIENDLY_BANNER = b"\r\nMicroPython on an emulated Sensorcast board\r\n>>> "
PASTE_WINDOW = 512
HARD_RESET_EXIT, DEEPSLEEP_EXIT = 2, 4  # exit codes of tools/fakes/machine.py

AGENT = (pathlib.Path(__file__).parent / "repl_agent.py").read_text()  # the REPL's interpreter


def micropython_env(flash, hardware_file, extra_path=(), **variables):
    """The environment that puts the host fakes in front of the board's files, and MicroPython's
    path as a board's: its flash, .frozen, then its /lib. The flash is the working directory
    MicroPython runs in, which is '' at the head of its path (as on a board), and /lib is "lib",
    relative to it: short entries, as on a board, for MicroPython keeps each entry of its path
    in the heap and every import builds paths there. The fakes, which are C on a board, are
    reached as short "../fakes" (linked beside the flash), and their hardware file by its path from
    the flash (which the fakes open at every read). So the heap a node takes is the same
    wherever the checkout and the test's folder are (the folder's path in the path had cut up
    the MQTT node's heap differently in a parallel run, whose folders are 10 characters longer)."""
    fakes = pathlib.Path(flash).parent / "fakes"
    if not fakes.is_symlink():
        fakes.symlink_to(FAKES)
    path = [*extra_path, "../fakes", ".frozen", "lib"]
    return dict(os.environ, MICROPYPATH=":".join(map(str, path)),
                FAKE_HARDWARE=os.path.relpath(hardware_file, flash), **variables)


RUN_MAIN = "try:\n    import boot\nexcept ImportError:\n    pass\nimport main\n"


class EmulatedBoard:
    def __init__(self, flash, hardware_file):
        self.flash = pathlib.Path(flash)
        self.hardware_file = pathlib.Path(hardware_file)
        self.flash.mkdir(parents=True, exist_ok=True)
        if not self.hardware_file.exists():
            self.hardware_file.write_text(json.dumps(DEFAULT_HARDWARE))
        self.lock = threading.RLock()
        self.client = None
        self.process = None
        self.mode = None
        self.code = bytearray()
        self.escape = b""
        self.pasting = False
        self.pasted = 0
        self.running_exec = False
        self.ends_seen = 0
        self.watchdog_file = self.hardware_file.with_suffix(".watchdog")
        self.prelude = ""  # code run before boot.py at each power-on: how a test wires in a fault

    def _spawn(self, code, mode, reset_cause="power"):
        self.watchdog_file.unlink(missing_ok=True)  # a reset stops the watchdog
        env = micropython_env(self.flash, self.hardware_file, FAKE_RESET_CAUSE=reset_cause,
                              FAKE_WATCHDOG=str(self.watchdog_file))
        process = subprocess.Popen([str(MICROPYTHON), "-c", code], cwd=self.flash, env=env, bufsize=0,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.process, self.mode = process, mode
        threading.Thread(target=self._pump, args=(process,), daemon=True).start()
        threading.Thread(target=self._watchdog, args=(process,), daemon=True).start()

    def _watchdog(self, process):
        """The hardware watchdog: a program that started machine.WDT and then went its
        timeout unfed is reset, whatever it is doing."""
        while process.poll() is None:
            time.sleep(0.1)
            try:
                timeout = int(self.watchdog_file.read_text()) / 1000
                fed = self.watchdog_file.stat().st_mtime
            except (OSError, ValueError):  # not started, or being fed right now
                continue
            if time.time() - fed > timeout:
                with self.lock:
                    if process is not self.process:
                        return
                    self.process = None
                    process.kill()
                    process.wait()
                    self.send(b"\r\n[the watchdog reset the board]\r\n")
                    self.power_on(reset_cause="watchdog")
                return

    def power_on(self, reset_cause="power"):
        """Run boot.py and main.py as a board does after a reset; a REPL if there is no main.py."""
        with self.lock:
            if (self.flash / "main.py").exists() or (self.flash / "main.mpy").exists():
                self._spawn(self.prelude + RUN_MAIN, "running", reset_cause)
            else:
                self._repl()

    def power_off(self):
        with self.lock:
            self._stop_process()

    def _repl(self):
        self._spawn(AGENT, "friendly")
        self.send(FRIENDLY_BANNER)

    def _stop_process(self):
        """End what runs: Ctrl-C for a program (it may clean up), a kill for the bare REPL."""
        process, self.process = self.process, None
        if process and process.poll() is None:
            process.send_signal(signal.SIGINT if self.mode == "running" else signal.SIGKILL)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _pump(self, process):
        """Copy a process's output to the client; notice the end of an exec and of the process."""
        while chunk := os.read(process.stdout.fileno(), 4096):
            with self.lock:
                if process is not self.process:
                    continue
                self.send(chunk)
                if self.running_exec:
                    self.ends_seen += chunk.count(b"\x04")
                    if self.ends_seen >= 2:
                        self.running_exec = False
                        self.send(b">")
        code = process.wait()
        with self.lock:
            if process is not self.process:
                return
            self.running_exec = False
            if code == HARD_RESET_EXIT:
                self.power_on()
            elif code == DEEPSLEEP_EXIT:
                threading.Timer(1.0, self.power_on, kwargs={"reset_cause": "deepsleep"}).start()
            elif self.mode == "running":
                self._repl()

    def send(self, data):
        if self.client:
            try:
                self.client.sendall(data)
            except OSError:
                self.client = None

    def feed(self, data):
        """Bytes from the serial line, as the board's REPL reads them."""
        with self.lock:
            for byte in data:
                self._byte(bytes([byte]))

    def _byte(self, byte):
        if self.pasting:
            return self._paste(byte)
        if self.mode == "running":
            if byte == b"\x03":
                self._stop_process()
                self._repl()
        elif self.mode == "friendly":
            if byte == b"\x01":
                self.mode, self.code = "raw", bytearray()
                self.send(b"\r\n" + RAW_BANNER + b">")
            elif byte == b"\x04":
                self.send(b"MPY: soft reboot\r\n")
                self._stop_process()
                self.power_on()
            elif byte in (b"\x02", b"\x03"):
                self.send(b"\r\n>>> ")
        elif self.running_exec:
            if byte == b"\x03":
                self.process.send_signal(signal.SIGINT)
        else:
            self._raw(byte)

    def _raw(self, byte):
        if self.escape or byte == b"\x05":
            self.escape += byte
            if self.escape == b"\x05A\x01":
                self.escape, self.pasting, self.pasted = b"", True, 0
                self.send(b"R\x01" + struct.pack("<H", PASTE_WINDOW))
            elif not b"\x05A\x01".startswith(self.escape):
                self.escape = b""
        elif byte == b"\x04" and not self.code:
            self.send(b"soft reboot\r\n")
            self._stop_process()
            self._spawn(AGENT, "raw")
            self.send(RAW_BANNER + b">")
        elif byte == b"\x04":
            self.send(b"OK")
            self._exec()
        elif byte == b"\x02":
            self.mode = "friendly"
            self.send(b"\r\n>>> ")
        elif byte in (b"\x01", b"\x03"):
            self.code = bytearray()
            if byte == b"\x01":
                self.send(RAW_BANNER + b">")
        else:
            self.code += byte

    def _paste(self, byte):
        if byte == b"\x04":
            self.pasting = False
            self.send(b"\x04")
            return self._exec()
        self.code += byte
        self.pasted += 1
        if self.pasted % PASTE_WINDOW == 0:
            self.send(b"\x01")

    def _exec(self):
        code, self.code = bytes(self.code), bytearray()
        self.running_exec, self.ends_seen = True, 0
        self.process.stdin.write(b"%d\n" % len(code) + code)

    def serve(self, listener):
        """Take one serial connection at a time, as a USB port does."""
        self.power_on()
        while True:
            connection, _ = listener.accept()
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.client = connection
            try:
                while data := connection.recv(4096):
                    self.feed(data)
            except ConnectionResetError:  # the tool at the other end quit without closing
                pass
            with self.lock:
                if self.client is connection:
                    self.client = None
            connection.close()


def start(flash, hardware_file, port=0):
    """An emulated board serving on loopback in a background thread; returns its port."""
    listener = socket.create_server(("127.0.0.1", port))
    board = EmulatedBoard(flash, hardware_file)
    threading.Thread(target=board.serve, args=(listener,), daemon=True).start()
    return board, listener.getsockname()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make emulate", description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=1, help="how many (default 1)")
    parser.add_argument("--port", type=int, default=0, help="first TCP port (default: any free)")
    parser.add_argument("--dir", default=str(ROOT / "var" / "boards"), help="where their flash folders live")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    boards = []
    try:
        for n in range(1, args.boards + 1):
            folder = pathlib.Path(args.dir) / f"board-{n}"
            board, port = start(folder / "flash", folder / "hardware.json", args.port and args.port + n - 1)
            boards.append(board)
            print(f"board-{n}: PORT=socket://127.0.0.1:{port}  (flash: {folder / 'flash'})", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        for board in boards:
            board.power_off()


if __name__ == "__main__":
    sys.exit(main())
