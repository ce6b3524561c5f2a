"""The README's screenshot, and that its caption holds: the dashboard at 24 h, three
devices, one above its threshold. Retake it with
``.venv/bin/pytest tests/e2e/test_readme_screenshot.py``, then copy
``test-artifacts/test_the_readme_screenshot-dashboard.png`` to ``docs/dashboard.png``."""
import random
import re
import time

import requests
from playwright.sync_api import expect

from simulator.devices import Device

DAY = 24 * 3600
EVERY = 300  # seconds between readings
DEVICES = [("esp-kitchen", "Kitchen", "Ground floor"), ("esp-living", "Living room", "Ground floor"),
           ("esp-attic", "Attic", "Upstairs")]


def a_day_of(device, token, server):
    """A day of the simulator's readings, as the device would have sent them."""
    simulated = Device(device, token, random.Random(device))
    now = time.time()
    readings = []
    for ts in range(int(now - DAY), int(now), EVERY):
        readings.append(simulated.reading(simulated.measure(ts), ts, ts - now + DAY))
    assert server.post("/api/readings", token, json=readings).ok


def test_the_readme_screenshot(live_server, token_for, open_page, screenshot, monkeypatch):
    monkeypatch.setattr(Device, "sensor_fault_rate", 0.0)
    tokens = {device: token_for(device) for device, _, _ in DEVICES}
    for device, name, group in DEVICES:
        a_day_of(device, tokens[device], live_server)
        requests.patch(f"{live_server.url}/api/devices/{device}", json={"name": name, "group": group}, timeout=5)
    requests.put(f"{live_server.url}/api/devices/esp-attic/thresholds/temperature", json={"low": 12, "high": 27.5},
                 timeout=5)
    live_server.post("/api/readings", tokens["esp-attic"], json={"temperature": 28.1, "humidity": 41.2})
    page = open_page(viewport={"width": 1280, "height": 860}, color_scheme="light")
    page.add_init_script("localStorage.setItem('sensorcast.range', JSON.stringify({name: '24h'}))")

    page.goto(live_server.url + "/")

    expect(page.locator("#connection")).to_have_text("live")
    expect(page.locator(".card")).to_have_count(3)
    for chart in page.locator(".card .chart").all():
        expect(chart).to_have_attribute("data-range", "24h")
        expect(chart).not_to_have_class(re.compile(r"\bloading\b"))
    expect(page.locator("#alerts .active")).to_have_text("1 active: Attic temperature high")
    expect(page.locator('[data-device="esp-attic"] .threshold')).to_have_text(["temperature low 12.00 °C", "temperature high 27.50 °C"])
    screenshot(page, "dashboard")
    assert page.console_errors == []
