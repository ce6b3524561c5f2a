# Sensorcast: the user's front door. `make help` lists the targets.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SETUP := $(VENV)/.installed

.PHONY: help run simulate bench test flash deploy provision monitor emulate release
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(SETUP): pyproject.toml tools/fetch_assets.py
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is needed" if sys.version_info < (3, 11) else 0)'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,fast]' 2>/dev/null || { $(PY) -m pip install --quiet -e '.[dev]' && \
		echo "make: gunicorn's C HTTP parser did not build (no gcc?): gunicorn parses HTTP in Python, a little slower"; }
	$(PY) tools/fetch_assets.py
	touch $@

run: $(SETUP)  ## start Redis (embedded unless REDIS_URL is set) and the server (RUN_ARGS="--port 8000")
	@case "$(PORT)" in ''|*[!0-9]*) ;; *) echo 'make run: PORT is the board'"'"'s serial port (make flash, deploy,' \
		'provision); for the server'"'"'s own, RUN_ARGS="--port $(PORT)"' >&2; exit 2;; esac
	$(PY) -m tools.run $(RUN_ARGS)

simulate: $(SETUP)  ## fake devices posting to the running server (SIM_ARGS="--devices 5 --speed 60")
	$(PY) -m simulator $(SIM_ARGS)

bench: $(SETUP)  ## fan-out and ingest figures, side by side with stock flask-sse
	$(PY) -m tools.bench $(BENCH_ARGS)

flash: $(SETUP)  ## MicroPython onto a board: PORT=/dev/ttyUSB0 [CHIP=esp32] [FIRMWARE=x.bin]
	$(PY) -m tools.flash --port "$(PORT)" --chip "$(CHIP)" --firmware "$(FIRMWARE)"

deploy: $(SETUP)  ## our firmware onto the board: PORT=… [MPY=1] [SETTINGS=settings.json]
	$(PY) -m tools.deploy --port "$(PORT)" --settings "$(SETTINGS)" $(if $(MPY),--mpy)

provision: $(SETUP)  ## the board's settings, token and release key: PORT=… DEVICE=kitchen [SENSOR=dht22|dht11|thermistor PIN=4] [SERVER=http://…:5000, default make run's port] [DATA=make run's --data] [TRANSPORT=mqtt [BROKER=mqtt://host:1883]]
	$(PY) -m tools.provision --port "$(PORT)" --device "$(DEVICE)" --server "$(SERVER)" --key "$(RELEASE_KEY)" \
		--sensor "$(or $(SENSOR),dht22)" --pin "$(or $(PIN),4)" \
		--transport "$(or $(TRANSPORT),http)" --broker "$(BROKER)" $(if $(DATA),--data "$(DATA)")

release: $(SETUP)  ## signed firmware over the air to the boards: [VERSION=0.2.0] [MPY=1] [DEVICES=kitchen,attic]; TARGET=0.1.0 targets a published one again
	$(PY) -m tools.release --version "$(VERSION)" --devices "$(DEVICES)" --key "$(RELEASE_KEY)" --target "$(TARGET)" \
		$(if $(MPY),--mpy)

monitor: $(SETUP)  ## the board's serial log: PORT=…
	$(PY) -m tools.monitor --port "$(PORT)"

emulate: $(SETUP)  ## emulated boards for the targets above: [BOARDS=2] [EMULATE_PORT=4000, the first's; default: any free]
	$(PY) -m tools.emulator --boards $(or $(BOARDS),1) --port $(or $(EMULATE_PORT),0)

TEST_ARGS ?= -n auto --dist loadfile
test: $(SETUP)  ## run every test, a file at a time on each core (TEST_ARGS="" runs them one by one)
	$(PY) -m pytest $(TEST_ARGS)
