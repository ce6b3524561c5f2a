# MicroPython, run by the emulated board before boot.py (``EmulatedBoard.prelude``), with
# TRACE, CUT and ERROR defined in front of it. Every change to the flash (a file opened for
# writing, a write, a rename, a remove, a mkdir) is a step, listed in the host file TRACE
# across resets. Step CUT fails once with OSError(ERROR) if ERROR is set, as a full flash
# does; else the interpreter is killed before it with SIGKILL, as a power cut stops a
# board: no handler, no flush, no close.
import builtins
import os as real_os
import json as real_json

real_import, real_open = builtins.__import__, builtins.open


def step(what):
    with real_open(TRACE) as f:
        done = len(f.read().splitlines())
    if done == CUT and not ERROR:
        real_os.system("kill -9 $PPID")
    with real_open(TRACE, "a") as f:
        f.write(what + "\n")
    if done == CUT:
        raise OSError(ERROR)


class File:
    def __init__(self, path, mode):
        step("open %s" % path)
        self.path, self.file = path, real_open(path, mode)

    def write(self, data):
        step("write %s" % self.path)
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self.file.close()


class Os:
    def __getattr__(self, name):
        real = getattr(real_os, name)
        if name not in ("rename", "remove", "mkdir", "rmdir"):
            return real

        def change(*paths):
            step("%s %s" % (name, " ".join(paths)))
            return real(*paths)

        return change


class Json:
    def dump(self, data, file):  # the real one writes only to a built-in stream
        file.write(real_json.dumps(data))

    def __getattr__(self, name):
        return getattr(real_json, name)


def opener(path, mode="r", *args):
    return File(path, mode) if "w" in mode or "a" in mode else real_open(path, mode, *args)


def importer(name, *args):
    return {"os": Os, "json": Json}.get(name, lambda: real_import(name, *args))()


builtins.__import__, builtins.open = importer, opener
