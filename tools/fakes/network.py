"""Host fake of MicroPython's ``network.WLAN``: the test switches Wi-Fi on and off."""
import machine

STA_IF, AP_IF = 0, 1
STAT_IDLE, STAT_CONNECTING, STAT_GOT_IP = 1000, 1001, 1010
STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD = 201, 202


class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = False

    def active(self, value=None):
        if value is None:
            return self._active
        self._active = bool(value)

    def connect(self, ssid=None, key=None):
        if not self._active:
            raise OSError("Wifi Not Started")

    def disconnect(self):
        pass

    def isconnected(self):
        return self._active and machine.hardware().get("wifi", True)

    def status(self, param=None):
        if param == "rssi":
            rssi = machine.hardware().get("rssi", -61)
            if rssi == "radio fault":
                raise RuntimeError(rssi)
            return rssi
        return STAT_GOT_IP if self.isconnected() else STAT_NO_AP_FOUND

    def ifconfig(self):
        return ("127.0.0.2", "255.0.0.0", "127.0.0.1", "127.0.0.1")
