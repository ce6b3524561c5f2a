"""Host fake of MicroPython's ``machine`` (Pin, ADC, WDT, reset and sleep), driven by the
test through the JSON file named by FAKE_HARDWARE; it is re-read whenever it changes."""
import errno
import json
import os
import sys

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
_file = {"text": None, "state": {}, "failures": 0, "series": 0}


def hardware():
    with open(os.getenv("FAKE_HARDWARE")) as f:
        text = f.read()
    if text != _file["text"]:
        _file.update(text=text, state=json.loads(text), series=0)
        _file["failures"] = _file["state"].get("fail_reads", 0)
    return _file["state"]


def failing_read():
    """Raise the sensor failure the test asked for, as many times as it asked."""
    if hardware().get("fail_kind") == "checksum" and _file["failures"] > 0:
        _file["failures"] -= 1
        raise Exception("checksum error")  # as MicroPython's dht driver raises it
    if _file["failures"] > 0:
        _file["failures"] -= 1
        raise OSError(errno.ETIMEDOUT)


def next_of(name):
    """The next value of a series the test gave (the last one repeats)."""
    series = hardware()[name]
    value = series[min(_file["series"], len(series) - 1)]
    _file["series"] += 1
    return value


class Pin:
    IN, OUT, OPEN_DRAIN = 0, 1, 2
    PULL_UP, PULL_DOWN = 1, 2

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self._value = value or 0

    def value(self, value=None):
        if value is None:
            return self._value
        self._value = int(bool(value))

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class ADC:
    ATTN_0DB, ATTN_2_5DB, ATTN_6DB, ATTN_11DB = 0, 1, 2, 3

    def __init__(self, pin, atten=None):
        self.pin = pin

    def atten(self, value):
        self.attenuation = value

    def read(self):
        failing_read()
        return next_of("adc")

    def read_u16(self):
        return self.read() * 65535 // 4095


class WDT:
    """Once started it cannot be stopped: the emulated board resets the interpreter when
    it goes ``timeout`` ms unfed (the file FAKE_WATCHDOG says when it was last fed)."""

    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        self.feed()

    def feed(self):
        if os.getenv("FAKE_WATCHDOG"):
            with open(os.getenv("FAKE_WATCHDOG"), "w") as f:
                f.write(str(self.timeout))


def reset_cause():
    cause = os.getenv("FAKE_RESET_CAUSE") or hardware().get("reset_cause")
    return {"deepsleep": DEEPSLEEP_RESET, "watchdog": WDT_RESET}.get(cause, PWRON_RESET)


def deepsleep(ms=0):
    """The process ends, as the board's CPU does; the emulated board wakes it again."""
    print("deepsleep", ms)
    sys.exit(DEEPSLEEP_RESET)


def reset():
    sys.exit(HARD_RESET)


def unique_id():
    return b"\xa4\xcf\x12\x34\x56\x78"


def freq():
    return 160000000
