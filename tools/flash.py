"""``make flash PORT=… [CHIP=…] [FIRMWARE=….bin]``: MicroPython onto a board with esptool.

Erases the flash, then writes the image at the chip's offset. Without CHIP the chip is
asked for (esptool ``chip-id``); without FIRMWARE the official MicroPython image for
the chip is downloaded once into a cache and checked to be an ESP image for that chip.
"""
import argparse
import pathlib
import re
import subprocess
import sys
import urllib.request

MICROPYTHON_RELEASE = "20241129-v1.24.1"
DOWNLOADS = "https://micropython.org/resources/firmware/"
CACHE = pathlib.Path.home() / ".cache" / "sensorcast" / "firmware"
BAUD = "460800"
ESP_IMAGE_MAGIC = 0xE9


class Chip:
    def __init__(self, offset, board, image_chip_id=None, flash_mode=()):
        self.offset = offset
        self.board = board
        self.image_chip_id = image_chip_id  # in the ESP32 family's extended image header
        self.flash_mode = flash_mode


CHIPS = {
    "esp32": Chip("0x1000", "ESP32_GENERIC", 0),
    "esp32s2": Chip("0x1000", "ESP32_GENERIC_S2", 2),
    "esp32s3": Chip("0x0", "ESP32_GENERIC_S3", 9),
    "esp32c3": Chip("0x0", "ESP32_GENERIC_C3", 5),
    "esp8266": Chip("0x0", "ESP8266_GENERIC", flash_mode=("--flash-mode", "dio", "--flash-size", "detect")),
}


class FlashError(Exception):
    """What went wrong, in words for the user; the only error ``main`` prints."""


def flash_commands(port, chip, firmware):
    """The esptool argument lists that erase the board and write ``firmware`` to it."""
    if not port:
        raise FlashError("PORT is needed, e.g. make flash PORT=/dev/ttyUSB0")
    if chip not in CHIPS:
        raise FlashError(f"unknown CHIP {chip!r}; one of {', '.join(CHIPS)}")
    target = ["--chip", chip, "--port", port]
    return [target + ["erase-flash"],
            target + ["--baud", BAUD, "write-flash", *CHIPS[chip].flash_mode, CHIPS[chip].offset, str(firmware)]]


def detect_chip(port):
    result = subprocess.run([sys.executable, "-m", "esptool", "--port", port, "chip-id"],
                            capture_output=True, text=True)
    found = re.search(r"Chip (?:is|type:)\s+(ESP[\w-]+)", result.stdout)
    if not found:
        raise FlashError(f"no ESP chip answered on {port}; hold BOOT while it connects, or give CHIP=")
    return found.group(1).lower().replace("-", "")


def official_image(chip):
    """The cached official MicroPython image for ``chip``, downloaded when missing."""
    name = f"{CHIPS[chip].board}-{MICROPYTHON_RELEASE}.bin"
    image = CACHE / name
    if not image.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"downloading {name}")
        try:
            urllib.request.urlretrieve(DOWNLOADS + name, image.with_suffix(".part"))
        except OSError as error:
            raise FlashError(f"could not download {name} ({error}); offline? pass FIRMWARE=path/to.bin")
        image.with_suffix(".part").rename(image)
    return image


def check_image(image, chip):
    header = pathlib.Path(image).read_bytes()[:16]
    if len(header) < 16 or header[0] != ESP_IMAGE_MAGIC:
        raise FlashError(f"{image} is not an ESP firmware image")
    expected = CHIPS[chip].image_chip_id
    if expected is not None and int.from_bytes(header[12:14], "little") != expected:
        raise FlashError(f"{image} is not built for {chip}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="make flash", description=__doc__.splitlines()[0])
    parser.add_argument("--port", default="")
    parser.add_argument("--chip", default="")
    parser.add_argument("--firmware", default="")
    args = parser.parse_args(argv)
    try:
        chip = args.chip or (args.port and detect_chip(args.port))
        flash_commands(args.port, chip, "")  # checks PORT and CHIP before any download
        firmware = args.firmware or official_image(chip)
        check_image(firmware, chip)
        for command in flash_commands(args.port, chip, firmware):
            subprocess.run([sys.executable, "-m", "esptool", *command], check=True)
    except FlashError as error:
        print(f"flash: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError:
        return 1
    print("flashed; next: make deploy PORT=" + args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
