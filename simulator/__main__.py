"""``make simulate``: fake devices posting to the running server until Ctrl-C or --duration.

For a local server, tokens are made on first use in its Redis and kept in
``var/simulator-tokens.json``; for another server pass ``--token`` (used by every device).
A device whose token the server refuses (revoked from the dashboard, say) stops; the
others go on, and the run ends once none is left.
"""
import argparse
import json
import pathlib
import random
import signal
import sys
import time
from urllib.parse import urlsplit

from server import DATA_DIR, SERVER_URL_FILE, create_app
from server.auth import issue_token, token_device
from server.connections import UNREACHABLE, client_for
from server.embedded_redis import EmbeddedRedis, runs_embedded
from server.readings import DEVICE_ID, DEVICE_RULE
from simulator.devices import AuthRefused, Device, Fleet, MqttFleet

TOKENS_FILE = "simulator-tokens.json"  # in make run's data folder


def local_redis(data_dir=DATA_DIR):
    """A client of the local server's Redis, as its settings name it (one Redis, Sentinels
    or a cluster): the one ``make run --data data_dir`` runs, unless they name another."""
    config = create_app().config
    if runs_embedded(config):
        config["REDIS_URL"] = EmbeddedRedis(data_dir).url
    return client_for(config)


def local_tokens(names, data_dir=DATA_DIR):
    """A working token per device, made in the local server's Redis when needed, and kept
    in ``data_dir``; the tokens of devices not in this run are kept for the next."""
    client = local_redis(data_dir)
    kept = data_dir / TOKENS_FILE
    saved = json.loads(kept.read_text()) if kept.exists() else {}
    tokens = {name: saved[name] if token_device(client, saved.get(name, "")) == name
              else issue_token(client, name) for name in names}
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.touch(mode=0o600)
    kept.write_text(json.dumps(saved | tokens))
    return tokens


def running_server(data_dir=DATA_DIR):
    """The address ``make run`` is serving on (it writes it in its data folder), else port 5000's."""
    url_file = data_dir / SERVER_URL_FILE
    return url_file.read_text() if url_file.exists() else "http://localhost:5000"


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=3, help="how many (default 3)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between readings (default 5)")
    parser.add_argument("--speed", type=float, default=1.0, help="run the daily curve X times faster, e.g. 60: a day in 24 minutes; "
                        "devices still post every --interval (default 1)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--seed", type=int, help="for a reproducible run")
    parser.add_argument("--url", help="the server (default: where make run serves, as its data folder says)")
    parser.add_argument("--data", type=pathlib.Path, default=DATA_DIR,
                        help="make run's --data folder, where it says where it serves (default: var/)")
    parser.add_argument("--token", help="the token every device sends (default: made locally)")
    parser.add_argument("--rate", type=float, help="load mode: readings per second in all")
    parser.add_argument("--prefix", default="sim", help="device names are PREFIX-1, PREFIX-2, ...")
    parser.add_argument("--transport", choices=("http", "mqtt"), default="http",
                        help="post to --url, or publish to the broker at --mqtt-url (default http)")
    parser.add_argument("--mqtt-url", help="mqtt://user:password@host:1883 (default: the local server's "
                        "SENSORCAST_MQTT_URL, whose login may publish for every device)")
    args = parser.parse_args(argv)
    args.url = args.url or running_server(args.data)
    if args.devices < 1 or args.interval <= 0 or (args.rate is not None and args.rate <= 0):
        parser.error("--devices: at least 1; --interval and --rate: more than 0")
    url = urlsplit(args.url)
    if url.scheme not in ("http", "https") or not url.hostname:
        parser.error(f"--url: {args.url!r} is not a server's address such as http://localhost:5000")
    if not DEVICE_ID.match(f"{args.prefix}-{args.devices}"):  # the longest name
        parser.error(f"--prefix: device names PREFIX-N must be {DEVICE_RULE}")
    return args


def main(argv=None):
    args = parse(argv)
    names = [f"{args.prefix}-{n}" for n in range(1, args.devices + 1)]
    if args.transport == "mqtt":
        mqtt_url = args.mqtt_url or create_app().config["MQTT_URL"]
        try:
            fleet, target = MqttFleet(mqtt_url, names, random.Random(args.seed)), urlsplit(mqtt_url).hostname
        except (AuthRefused, ValueError, OSError) as error:  # refused, unreachable, or no broker given
            print(f"simulator: {error}; check --mqtt-url (or SENSORCAST_MQTT_URL)", file=sys.stderr)
            return 2
    else:
        try:
            tokens = dict.fromkeys(names, args.token) if args.token else local_tokens(names, args.data)
        except UNREACHABLE as error:
            print(f"simulator: cannot reach the local server's Redis ({error}): is `make run` running? "
                  "For another server, pass its device token with --token", file=sys.stderr)
            return 2
        fleet, target = Fleet(args.url, tokens, random.Random(args.seed)), args.url
    step = args.devices / args.rate if args.rate else args.interval
    start = next_step = time.time()
    print(f"simulating {', '.join(names)} -> {target} over {args.transport} (every {step:g} s)", flush=True)
    unreachable, said_wait = None, False
    try:
        while fleet.devices and (args.duration is None or time.time() - start < args.duration):
            now = time.time()
            for refusal in fleet.step(now, clock=start + (now - start) * args.speed, uptime=now - start):
                print(f"simulator: {refusal}", file=sys.stderr)
            if fleet.waited and not said_wait:  # once a run
                said_wait = True
                print("simulator: the server asked a device to wait (over its rate limit, such as "
                      "SENSORCAST_READINGS_RATE_LIMIT, busy, or its Redis full); its readings are kept meanwhile, "
                      f"up to {Device.buffer_size} a device, the oldest dropped past that", file=sys.stderr, flush=True)
            if fleet.unreachable != unreachable:  # said once an outage, and once it is over
                unreachable = fleet.unreachable
                print(f"simulator: {unreachable}; readings are kept until it answers" if unreachable
                      else "simulator: the server answers again", file=sys.stderr, flush=True)
            next_step += step
            if time.time() - next_step > step:  # an upload held the run up: the steps missed are not made up at once
                next_step = time.time()
            time.sleep(max(0.0, next_step - time.time()))
        for refusal in fleet.finish(time.time()):  # --duration is up: what the dropouts held goes up
            print(f"simulator: {refusal}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        fleet.close()
    print(f"sent {fleet.sent}, still buffered {fleet.buffered}, dropped {fleet.dropped} (buffers full), "
          f"upload tries failed {fleet.failed}")
    if not fleet.devices:
        print(f"simulator: every device's token was refused{'; check --token' if args.token else ''}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a service stop ends a run as Ctrl-C does
    sys.exit(main())
