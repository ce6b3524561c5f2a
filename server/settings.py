"""The server's settings: their defaults, which ``create_app`` reads the environment over,
and the bounds of the numeric ones, checked before any Redis client is made
(``connections.check_settings``), so a value that cannot work stops the server at start."""
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "var"
SERVER_URL_FILE = "server-url"  # in make run's data folder while it runs: where make simulate posts

DEFAULTS = {
    "REDIS_URL": f"unix://{DATA_DIR / 'redis.sock'}",
    "REDIS_MAXMEMORY": "1gb",  # the embedded Redis's memory cap
    "REDIS_SENTINELS": "",  # host:port,… of Redis Sentinels: then the primary they know as REDIS_SERVICE
    "REDIS_SERVICE": "sensorcast",
    "REDIS_CLUSTER": "",  # host:port,… of some of a Redis Cluster's nodes: then the keys are split over it…
    "REDIS_SHARDS": 6,  # …in this many shards, fixed for the life of the data (shards.py)
    "WAIT_REPLICAS": 0,  # an upload's 201 waits until this many replicas have it (Redis's WAIT)…
    "WAIT_MS": 1000,  # …for up to this long, else 503: the board sends it again, and it is stored once
    "AUTH": True,
    "RETENTION": 7 * 24 * 3600,
    "STREAM_MAXLEN": 100_000,
    "MAX_REPLAY": 5000,  # readings a reconnecting browser gets replayed at most (further back: a reset)
    "HISTORY_MAXLEN": 200_000,
    "MAX_DEVICE_FIELDS": 64,
    "OFFLINE_AFTER": 600,
    "HEARTBEAT": 15,
    "RETRY_MS": 3000,
    "MAX_STREAMS": 5000,
    "MAX_STREAMS_PER_ADDRESS": 100,
    "CONNECTIONS_PER_ADDRESS": 256,  # open at once per worker, where no proxy stands in front
    "CLIENT_BUFFER": 1024 * 1024,
    "CLIENT_LAG": 30,
    "REDIS_CONNECTIONS": 32,
    "TRUSTED_PROXIES": 0,
    "MAX_BATCH": 500,
    "MAX_FUTURE": 300,
    "MAX_CONTENT_LENGTH": 256 * 1024,
    "RETRY_AFTER": 5,
    "RATE_LIMIT": 10,
    "RATE_BURST": 30,
    "READINGS_RATE_LIMIT": 50,
    "READINGS_BURST": 2000,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "LOGIN_FAILURES": 10,
    "LOGIN_QUEUE_SECONDS": 3,
    "BODY_TIMEOUT": 10,
    "BODIES_PER_ADDRESS": 20,
    "ALLOWED_HOSTS": [],
    "WEBHOOK_URL": "",
    "ALERT_BURST": 10,  # a device's threshold alerts at once, then one every ALERT_EVERY seconds
    "ALERT_EVERY": 60,
    "MQTT_URL": "",
    "MQTT_CA_FILE": "",
    "MQTT_CLIENT_ID": "",  # the client id's prefix; unset: sensorcast-<hostname>
    "MQTT_SESSION_EXPIRY": 7 * 24 * 3600,
    "MQTT_ADOPT_AFTER": 10,
    "HOMEASSISTANT_PREFIX": "homeassistant",  # Home Assistant's discovery prefix; "": no discovery
    "METRICS_TOKEN": "",
}

FRACTIONS = ("RATE_LIMIT", "READINGS_RATE_LIMIT")  # the numeric settings that may be fractions: 0.1 a second
AT_LEAST_ONE = ("MAX_BATCH", "MAX_CONTENT_LENGTH", "BODY_TIMEOUT", "CONNECTIONS_PER_ADDRESS")  # 0: no upload
LARGEST_SETTING = 10**9  # seconds (31 years), readings, bytes, browsers: in ms, still far inside Redis's 64 bits


def number_out_of_bounds(config):
    """What is wrong with the first numeric setting out of its bounds, or None."""
    for name, default in DEFAULTS.items():
        value = config.get(name, default)  # a config made for one client names only its own settings
        kinds, least = (int, float) if name in FRACTIONS else (int,), 1 if name in AT_LEAST_ONE else 0
        if type(default) is int and not (type(value) in kinds and least <= value <= LARGEST_SETTING):
            kind = "number" if name in FRACTIONS else "whole number"
            return f"SENSORCAST_{name}: must be a {kind} from {least} to {LARGEST_SETTING:,}, not {value!r}"
    return None
