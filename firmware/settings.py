"""The node's settings: one JSON file on the board's flash, checked before anything runs.

Only the start needs this module (node.py lets it go then), so every check of a setting
lives here, the MQTT broker's and the thermistor's pin too: none of it stays in the heap.
"""
import json
import os
import sys

from micropython import const

PATH = "settings.json"
_REQUIRED = const(("wifi_ssid", "server", "device", "sensor"))
_SENSORS = const(("dht11", "dht22", "thermistor"))
_TRANSPORTS = const(("http", "mqtt"))
_DEVICE_CHARS = const("abcdefghijklmnopqrstuvwxyz0123456789_-")
DEFAULTS = {
    "wifi_password": "", "token": "", "pin": 4, "interval": 30, "heartbeat": 300,
    "delta": {"temperature": 0.2, "humidity": 1.0}, "samples": 3, "deep_sleep": False,
    "led_pin": 2, "led_active_low": True, "watchdog": 60, "buffer": 0, "timeout": 10,
    "chip": None, "transport": "http",  # or mqtt, with these four:
    "mqtt_host": None, "mqtt_port": 1883, "mqtt_user": "", "mqtt_password": "",
    "thermistor": {"series": 10000, "r0": 10000, "t0": 25.0, "beta": 3950,
                   "ntc_to_ground": True, "vcc": 3.3, "full_scale": None},
}
# ADC1 pins by chip: ADC2 cannot be read while Wi-Fi is on.
ADC1_PINS = {"esp32": range(32, 40), "esp32s2": range(1, 11), "esp32s3": range(1, 11),
             "esp32c3": range(0, 5), "esp8266": (0,)}


class SettingsError(Exception):
    pass


def load(path=PATH):
    """The settings as a dict with defaults filled in (``chip`` found out when not given),
    or SettingsError saying what to fix."""
    try:
        with open(path) as f:
            given = json.load(f)
    except OSError:
        raise SettingsError("no %s on the board: copy settings.example.json, fill it in, deploy it" % path)
    except ValueError:
        raise SettingsError("%s is not valid JSON" % path)
    if not isinstance(given, dict):
        raise SettingsError("%s must hold one JSON object" % path)
    for name in _REQUIRED:
        if not given.get(name):
            raise SettingsError("%s: '%s' is missing" % (path, name))
    settings = dict(DEFAULTS)
    settings.update(given)
    thermistor = dict(DEFAULTS["thermistor"])
    thermistor.update(given.get("thermistor") or {})
    settings["thermistor"] = thermistor
    settings["chip"] = settings["chip"] or chip()
    if not valid_device(settings["device"]):
        raise SettingsError("%s: 'device' must be 1-32 characters of a-z 0-9 _ -" % path)
    if settings["sensor"] not in _SENSORS:
        raise SettingsError("%s: 'sensor' must be one of %s" % (path, ", ".join(_SENSORS)))
    if not settings["server"].startswith("http://") and not settings["server"].startswith("https://"):
        raise SettingsError("%s: 'server' must start with http:// or https://" % path)
    for name in ("interval", "heartbeat", "samples", "timeout"):
        if not isinstance(settings[name], (int, float)) or settings[name] <= 0:
            raise SettingsError("%s: '%s' must be a number above 0" % (path, name))
    pins = ADC1_PINS.get(settings["chip"], ())
    if settings["sensor"] == "thermistor" and settings["pin"] not in pins:
        raise SettingsError("%s: pin %s is not an ADC1 pin of %s (ADC2 stops working with Wi-Fi); use one of %s"
                            % (path, settings["pin"], settings["chip"], list(pins)))
    if settings["transport"] not in _TRANSPORTS:
        raise SettingsError("%s: 'transport' must be http or mqtt" % path)
    port = settings["mqtt_port"]
    if settings["transport"] == "mqtt" and not settings["mqtt_host"]:
        raise SettingsError("%s: 'mqtt_host' is missing (transport mqtt)" % path)
    if settings["transport"] == "mqtt" and (not isinstance(port, int) or not 0 < port < 65536):
        raise SettingsError("%s: 'mqtt_port' must be a port number" % path)
    return settings


def valid_device(name):
    """Whether the server takes ``name`` as a device id (server/readings.py's DEVICE_ID,
    without ``re``): better said at start than by every reading refused."""
    return isinstance(name, str) and 0 < len(name) <= 32 and all(c in _DEVICE_CHARS for c in name)


def chip():
    """'esp32', 'esp32s2', 'esp32s3', 'esp32c3' or 'esp8266'."""
    if sys.platform != "esp32":
        return sys.platform
    name = os.uname().machine.upper()
    for variant in ("S2", "S3", "C3"):
        if "ESP32" + variant in name:
            return "esp32" + variant.lower()
    return "esp32"
