"""Wi-Fi with a connect timeout and exponential backoff, and the time from NTP."""
import time

import network
import ntptime
from micropython import const

EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
_EARLIEST_SYNCED = const(1577836800)  # 2020-01-01
_CONNECT_TIMEOUT_MS = const(15000)
_MAX_BACKOFF_S = const(300)
FAILED = tuple(getattr(network, name) for name in
               ("STAT_NO_AP_FOUND", "STAT_WRONG_PASSWORD", "STAT_CONNECT_FAIL") if hasattr(network, name))


class Wifi:
    def __init__(self, ssid, password, log):
        self.ssid, self.password, self.log = ssid, password, log
        self.wlan = network.WLAN(network.STA_IF)
        self.backoff_s = 1
        self.next_try = 0
        self.online = False

    def up(self, feed):
        """True when connected; otherwise tries to connect, at most once per backoff period."""
        if not self.wlan.isconnected():
            if time.time() < self.next_try:
                return False
            self._connect(feed)
        connected = self.wlan.isconnected()
        if connected and not self.online:
            self.log("wifi: connected, address %s" % self.wlan.ifconfig()[0])
            self.backoff_s = 1
            sync_time(self.log)
        elif not connected:
            self.log("wifi: no connection; next try in %d s" % self.backoff_s)
            self.next_try = time.time() + self.backoff_s
            self.backoff_s = min(self.backoff_s * 2, _MAX_BACKOFF_S)
        self.online = connected
        return connected

    def _connect(self, feed):
        self.log("wifi: connecting to %s" % self.ssid)
        self.wlan.active(True)
        try:
            self.wlan.connect(self.ssid, self.password)
        except OSError as error:
            self.log("wifi: %r" % error)
        start = time.ticks_ms()
        while not self.wlan.isconnected() and time.ticks_diff(time.ticks_ms(), start) < _CONNECT_TIMEOUT_MS:
            if self.wlan.status() in FAILED:
                return
            feed()
            time.sleep_ms(100)

    def rssi(self):
        """The signal in dBm, or None while not connected."""
        if not self.wlan.isconnected():
            return None
        try:
            return self.wlan.status("rssi")
        except (OSError, ValueError):
            return None


def sync_time(log):
    try:
        ntptime.settime()
    except (OSError, OverflowError) as error:
        log("ntp: no time (%r); the server will stamp readings" % error)


def unix_time():
    """Seconds since 1970, or None while the clock was never set."""
    now = time.time() + EPOCH_OFFSET
    return now if now >= _EARLIEST_SYNCED else None
