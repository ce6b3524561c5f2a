"""``make monitor PORT=…``: the board's serial log, until Ctrl-C (any pyserial URL works)."""
import argparse
import sys

import serial


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make monitor", description=__doc__.splitlines()[0])
    parser.add_argument("--port", default="")
    parser.add_argument("--baud", type=int, default=115200)
    args = parser.parse_args(argv)
    if not args.port:
        print("monitor: PORT is needed, e.g. make monitor PORT=/dev/ttyUSB0", file=sys.stderr)
        return 2
    try:
        line = serial.serial_for_url(args.port, args.baud, timeout=1)
    except (serial.SerialException, ValueError) as error:
        print(f"monitor: cannot open {args.port}: {error}", file=sys.stderr)
        return 1
    try:
        while True:
            sys.stdout.write(line.read(line.in_waiting or 1).decode(errors="replace"))
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
    except serial.SerialException as error:  # unplugged, or the emulated board stopped
        print(f"\nmonitor: {args.port} went away ({error})", file=sys.stderr)
        return 1
    finally:
        line.close()


if __name__ == "__main__":
    sys.exit(main())
