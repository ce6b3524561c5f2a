"""The sensor node's loop: read, decide whether to report, buffer, upload, wait or sleep.

Nothing here stops the loop but Ctrl-C: an unexpected exception is logged and the next
cycle runs; broken settings are reported and re-read slowly, never a crash-and-reboot loop.
"""
import gc
import json
import sys
import time

import machine
from micropython import const

import net
from led import Led
from sensors import open_sensor
from uplink import Uplink
from version import VERSION

_STATE_PATH = const("state.json")
_SETTINGS_RETRY_MS = const(30000)
_UPDATE_MARKER = const("ota.json")  # loader.MARKER, FAILED and PENDING: used here without
_FAILED_UPDATE = const("ota-failed.json")  # importing the loader, whose code the heap may not fit
_PENDING_UPDATE = const("ota-pending.json")  # (boot.py's loader.recover() left the marker whole)
_UPDATE_BACKOFF = const("ota-backoff.json")  # {"failures" in a row, "until": time.time() the next may be tried}
_BACKOFF_S = const(86400)  # after a failed update none is tried for a day (setting update_backoff),
_MAX_BACKOFF_FACTOR = const(8)  # twice as long after each further failure in a row, up to 8 days
_ESP8266_BUFFER = const(40)  # readings kept while the server is away (setting buffer), on an ESP8266's heap,
_BUFFER = const(300)  # and on any other board's


def log(message):
    print("[%d] %s" % (time.ticks_ms() // 1000, message))


class Reporter:
    """Report on change, as ESPHome does: when a value moved by ``delta``, and at least every
    ``heartbeat`` s, so at the last cycle before it is up. Cycles come every ``interval`` s
    give or take a few ms against the clock: waiting for a whole heartbeat to have passed
    skipped, at random, the cycle that ends it, and a steady value came an interval late."""

    def __init__(self, delta, heartbeat, interval):
        self.delta = delta
        self.heartbeat_after = heartbeat - interval  # seconds since the last report
        self.last = None
        self.last_time = 0

    def due(self, values):
        if self.last is None or time.time() - self.last_time >= self.heartbeat_after:
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
        capacity = settings["buffer"] or (_ESP8266_BUFFER if sys.platform == "esp8266" else _BUFFER)
        if settings["transport"] == "http":
            self.uplink = Uplink(settings["server"], settings["token"], capacity, settings["timeout"], log)
        else:  # the HTTP node's heap never holds the MQTT code
            from mqtt_uplink import MqttUplink

            self.uplink = MqttUplink(settings, capacity, log)
        self.sensor = open_sensor(settings, log)
        self.wifi = net.Wifi(settings["wifi_ssid"], settings["wifi_password"], log)
        self.reporter = Reporter(settings["delta"], settings["heartbeat"], settings["interval"])
        self.next_update_check = 0
        self.on_trial = (read_json(_UPDATE_MARKER) or {}).get("state") == "trial"
        self.uptime_ms, self.ticks = 0, time.ticks_ms()
        self.watchdog = machine.WDT(timeout=settings["watchdog"] * 1000) if settings["watchdog"] else None
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
        self.answered = online and not self.uplink.away
        self.update(online)
        if self.uplink.auth_refused:
            log("the server refused the token: provision this device again")
            self.led.show("fault")
        else:
            self.led.show("trouble" if trouble or not delivered else "ok")

    def update(self, online):
        """At each heartbeat: a failed update is reported once, and, outside a backoff, a
        newer release is installed by restarting into it (boot.py, ota.py). All of that waits
        until nothing waits to be uploaded: the heap a check takes is then free, and a
        restart loses nothing. The backoff starts before that restart, whatever the install
        then does, and ends when a release stays: an offer of a new version at every
        heartbeat, forged or not, cannot restart the board at every heartbeat."""
        if online and not self.uplink.pending and time.time() >= self.next_update_check:
            net.sync_time(log)  # a clock left alone drifts (an ESP8266's, minutes a day): 5 min ahead is refused
            self.next_update_check = time.time() + self.settings["heartbeat"]
            failed = read_json(_FAILED_UPDATE) or {}
            if failed and not failed["reported"] and self.report(failed["version"], "failed", failed["reason"]):
                failed["reported"] = True
                write_json(_FAILED_UPDATE, failed)
            backoff = read_json(_UPDATE_BACKOFF) or {}
            if time.time() < backoff.get("until", 0):
                return
            running = VERSION.replace("+", "%2B")  # a query's + is a space: 0.1.0+2026… would never be this one
            _, offer = self.uplink.call("GET", "/api/firmware?fw=%s&device=%s" % (running, self.settings["device"]),
                                        None, "update check")
            if offer and (offer["version"] != failed.get("version") or failed.get("again")):
                self.back_off(backoff.get("failures", 0) + 1)
                log("update: %s is out; restarting to install it" % offer["version"])
                write_json(_PENDING_UPDATE, offer)  # a torn write is no request: it asks again
                machine.reset()

    def back_off(self, failures):
        """Try no update for ``update_backoff`` s, as if the one about to be tried failed,
        twice as long for each failure in a row before it. A clock NTP never set counts from its reset."""
        wait = self.settings.get("update_backoff", _BACKOFF_S) * min(2 ** (failures - 1), _MAX_BACKOFF_FACTOR)
        write_json(_UPDATE_BACKOFF, {"failures": failures, "until": time.time() + wait})
        log("update: should it fail, the next is tried in %d s at the earliest (try %d in a row)" % (wait, failures))

    def report(self, version, status, reason):
        answer = self.uplink.call("POST", "/api/firmware/report?device=" + self.settings["device"],
                                  {"version": version, "status": status, "reason": reason}, "report")
        return answer[0] == 204

    def reading(self, values):
        """The reading to queue (the uplink stamps its boot and seq)."""
        now = time.ticks_ms()
        self.uptime_ms += time.ticks_diff(now, self.ticks)
        self.ticks = now
        reading = {"device": self.settings["device"], "fw": VERSION,
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
        """Keep in flash what a deep sleep or a reset would lose: buffered readings, the
        uplink's seq and boot, when to ask for an update next."""
        uplink = self.uplink
        state = {"boot": uplink.boot, "seq": uplink.seq, "pending": uplink.pending, "dropped": uplink.dropped,
                 "last": self.reporter.last, "last_time": self.reporter.last_time, "check": self.next_update_check}
        write_json(_STATE_PATH, state)

    def restore(self):
        """Take back what save() kept: after a deep sleep all of it, as its boot goes on;
        after a reset the readings, sent under their own boot and seq, and only once."""
        state = read_json(_STATE_PATH)
        if state is None:
            return
        uplink = self.uplink
        uplink.pending, uplink.dropped = state["pending"], state["dropped"]
        if machine.reset_cause() == machine.DEEPSLEEP_RESET:
            uplink.boot, uplink.seq = state["boot"], state["seq"]
            self.reporter.last, self.reporter.last_time = state["last"], state["last_time"]
            self.next_update_check = state.get("check", 0)  # a heartbeat from the last, not every wake
        elif not self.settings["deep_sleep"]:
            write_json(_STATE_PATH, None)

    def run(self):
        interval_ms = int(self.settings["interval"] * 1000)
        while True:
            self.answered = True
            try:
                try:
                    self.cycle()
                finally:  # however it ended, a release on trial is judged (a cycle that broke counts against it)
                    if self.on_trial:
                        with_module("loader", "judge", self)
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


def with_module(name, function, *args):
    """``function(*args)`` of module ``name``, then let the module go: the update code is
    needed rarely, and a NodeMCU's heap cannot keep it."""
    try:
        return getattr(__import__(name), function)(*args)
    finally:
        sys.modules.pop(name, None)
        gc.collect()


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def start_node(led):
    """A node built from the settings; while they are missing or broken, say why, blink fast, look again."""
    while True:
        settings = read_settings()
        if settings is None:
            led.show("fault")
        else:
            try:
                node = Node(settings, led)
                led.show("ok")
                return node
            except Exception as error:  # a start that failed is retried, never a reboot loop
                log("start failed: %r" % error)
                sys.print_exception(error)
                led.show("trouble")
        led.wait(_SETTINGS_RETRY_MS, lambda: None)


def read_settings():
    """The checked settings, or None when they are missing or broken (the log says why).
    Then settings.py goes, before the node's own code loads: nothing after needs it."""
    import settings as settings_file

    try:
        return settings_file.load()
    except settings_file.SettingsError as error:
        log("settings: %s" % error)
        return None
    finally:
        del sys.modules["settings"]
        gc.collect()


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
