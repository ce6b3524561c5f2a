"""make flash builds the esptool commands a board needs, and says what is missing."""
import subprocess

import esptool
import pytest

from server import ROOT
from tools.flash import CHIPS, FlashError, check_image, flash_commands, main

OFFSETS = {"esp32": 0x1000, "esp32s2": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0, "esp8266": 0x0}


def parse_with_esptool(args):
    """esptool's own parser on the arguments: (global options, command, its options)."""
    esptool.cli._esp = None
    at = next(i for i, arg in enumerate(args) if arg in esptool.cli.commands)
    context = esptool.cli.make_context("esptool", list(args[:at + 1]))
    command = esptool.cli.commands[args[at]]
    return context.params, args[at], command.make_context(args[at], list(args[at + 1:]), parent=context).params


def image_for(chip, path):
    header = bytearray(64)
    header[0] = 0xE9
    header[12:14] = (CHIPS[chip].image_chip_id or 0).to_bytes(2, "little")
    path.write_bytes(bytes(header))
    return path


@pytest.mark.parametrize("chip", sorted(CHIPS))
def test_each_chip_is_erased_then_written_at_its_offset(chip, tmp_path):
    image = image_for(chip, tmp_path / "micropython.bin")

    erase, write = flash_commands("socket://127.0.0.1:9", chip, image)

    options, name, _ = parse_with_esptool(erase)
    assert (options["chip"], options["port"], name) == (chip, "socket://127.0.0.1:9", "erase-flash")
    options, name, params = parse_with_esptool(write)
    assert name == "write-flash" and options["baud"] == 460800
    [(offset, written)] = params["addr_filename"]
    assert offset == OFFSETS[chip] and written.name == str(image)
    assert (params["flash_mode"] == "dio") == (chip == "esp8266")


def test_a_missing_port_or_unknown_chip_is_explained(capsys):
    with pytest.raises(FlashError, match="PORT is needed"):
        flash_commands("", "esp32", "x.bin")
    with pytest.raises(FlashError, match="unknown CHIP 'esp31'"):
        flash_commands("/dev/ttyUSB0", "esp31", "x.bin")

    result = subprocess.run(["make", "-s", "flash", "CHIP=esp32"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0 and "PORT is needed" in result.stderr


def test_an_image_for_another_chip_is_refused(tmp_path):
    image = image_for("esp32s3", tmp_path / "s3.bin")
    check_image(image, "esp32s3")
    with pytest.raises(FlashError, match="not built for esp32"):
        check_image(image, "esp32")
    (tmp_path / "junk.bin").write_bytes(b"not firmware at all")
    assert main(["--port", "socket://127.0.0.1:9", "--chip", "esp32", "--firmware",
                 str(tmp_path / "junk.bin")]) == 2
