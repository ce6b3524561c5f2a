"""The sensor node's loop: read, decide whether to report, buffer, upload, wait or sleep.

Nothing here stops the loop but Ctrl-C: an unexpected exception is logged and the next
cycle runs; broken settings are reported and re-read slowly, never a crash-and-reboot loop.
"""
import binascii
import gc
import json
import os
import sys
import time

import machine

import net
import settings as settings_file
from led import Led
from sensors import open_sensor
from uplink import Uplink

VERSION = "0.1.0"
STATE_PATH = "state.json"
SETTINGS_RETRY_MS = 30000
DEFAULT_BUFFER = {"esp8266": 40}


def log(message):
    print("[%d] %s" % (time.ticks_ms() // 1000, message))


class Reporter:
    """Report on change, as ESPHome does: when a value moved by ``delta``, or every ``heartbeat`` s."""

    def __init__(self, delta, heartbeat):
        self.delta = delta
        self.heartbeat = heartbeat
        self.last = None
        self.last_time = 0

    def due(self, values):
        if self.last is None or time.time() - self.last_time >= self.heartbeat:
            return True
        for name, value in values.items():
            step = self.delta.get(name, 0) if isinstance(self.delta, dict) else self.delta
            if name not in self.last or abs(value - self.last[name]) >= step:
                return True
        return False

    def sent(self, values):
        self.last, self.last_time = values, time.time()


class Node:
    def __init__(self, settings, led):
        self.settings = settings
        self.led = led
        self.sensor = open_sensor(settings, log)
        self.wifi = net.Wifi(settings["wifi_ssid"], settings["wifi_password"], log)
        capacity = settings["buffer"] or DEFAULT_BUFFER.get(sys.platform, 300)
        self.uplink = Uplink(settings["server"], settings["token"], capacity, settings["timeout"], log)
        self.reporter = Reporter(settings["delta"], settings["heartbeat"])
        self.boot = binascii.hexlify(os.urandom(4)).decode()
        self.seq = 0
        self.uptime_ms, self.ticks = 0, time.ticks_ms()
        self.watchdog = machine.WDT(timeout=settings["watchdog"] * 1000) if settings["watchdog"] else None
        if settings["deep_sleep"]:
            self.restore()

    def feed(self):
        if self.watchdog:
            self.watchdog.feed()

    def cycle(self):
        online = self.wifi.up(self.feed)
        values = self.sensor.read()
        trouble = values is None
        if trouble:
            log("sensor: no good sample this time; skipped")
        elif self.reporter.due(values):
            self.uplink.add(self.reading(values))
            self.reporter.sent(values)
        self.feed()
        delivered = online and self.uplink.send()
        if self.uplink.auth_refused:
            log("the server refused the token: provision this device again")
            self.led.show("fault")
        else:
            self.led.show("trouble" if trouble or not delivered else "ok")

    def reading(self, values):
        self.seq += 1
        now = time.ticks_ms()
        self.uptime_ms += time.ticks_diff(now, self.ticks)
        self.ticks = now
        reading = {"device": self.settings["device"], "boot": self.boot, "seq": self.seq, "fw": VERSION,
                   "uptime": self.uptime_ms // 1000, "heap": gc.mem_free()}
        for name, value in values.items():
            reading[name] = round(value, 2)
        ts = net.unix_time()
        if ts is not None:
            reading["ts"] = ts
        rssi = self.wifi.rssi()
        if rssi is not None:
            reading["rssi"] = rssi
        if self.uplink.dropped:
            reading["dropped"] = self.uplink.dropped
        return reading

    def save(self):
        """Keep what a deep sleep would lose in flash: buffered readings, seq, boot."""
        state = {"boot": self.boot, "seq": self.seq, "pending": self.uplink.pending,
                 "dropped": self.uplink.dropped, "last": self.reporter.last,
                 "last_time": self.reporter.last_time}
        with open(STATE_PATH, "w") as f:
            json.dump(state, f)

    def restore(self):
        try:
            with open(STATE_PATH) as f:
                state = json.load(f)
        except (OSError, ValueError):
            return
        self.uplink.pending = state["pending"]
        self.uplink.dropped = state["dropped"]
        if machine.reset_cause() == machine.DEEPSLEEP_RESET:
            self.boot, self.seq = state["boot"], state["seq"]
            self.reporter.last, self.reporter.last_time = state["last"], state["last_time"]

    def run(self):
        interval_ms = int(self.settings["interval"] * 1000)
        while True:
            try:
                self.cycle()
            except Exception as error:  # the loop must outlive any one bad cycle
                log("cycle failed: %r" % error)
                sys.print_exception(error)
                self.led.show("trouble")
            gc.collect()
            if self.settings["deep_sleep"]:
                self.save()
                self.led.light(False)
                machine.deepsleep(interval_ms)
            self.led.wait(interval_ms, self.feed)


def start_node(led):
    """A node built from the settings; while they are missing or broken, say why, blink fast, look again."""
    while True:
        try:
            settings = settings_file.load()
            node = Node(settings, led)
            led.show("ok")
            return node
        except settings_file.SettingsError as error:
            log("settings: %s" % error)
            led.show("fault")
        except Exception as error:  # a start that failed is retried, never a reboot loop
            log("start failed: %r" % error)
            sys.print_exception(error)
            led.show("trouble")
        led.wait(SETTINGS_RETRY_MS, lambda: None)


def main():
    led = Led(2, True)
    try:
        node = start_node(led)
        led = node.led = Led(node.settings["led_pin"], node.settings["led_active_low"])
        log("sensorcast %s: device %s, sensor %s" % (VERSION, node.settings["device"], node.settings["sensor"]))
        node.run()
    except KeyboardInterrupt:
        led.light(False)
        log("stopped")
