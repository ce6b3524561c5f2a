# MicroPython: the interpreter behind an emulated board's REPL (tools/emulator.py). It
# runs each framed piece of code (its length, a newline, the code) in one namespace and
# ends its output as the raw REPL does (stdout, \x04, the exception if any, \x04).
import os, sys
import machine, network, dht, ntptime  # the host fakes, loaded while the host's files are at /
flash = os.getcwd()
os.umount("/")
os.mount(os.VfsPosix(flash), "/")  # the flash folder becomes the board's root ...
os.mount(os.VfsPosix("/"), "/host")  # ... and the fakes reach their hardware file from /host
os.chdir("/")
os.putenv("FAKE_HARDWARE", "/host" + flash + "/" + os.getenv("FAKE_HARDWARE"))  # given from the flash
os.putenv("FAKE_WATCHDOG", "/host" + os.getenv("FAKE_WATCHDOG"))
sys.path[:] = ["", "/lib", ".frozen"]
namespace = {"__name__": "__main__"}
while True:
    size = sys.stdin.buffer.readline()
    if not size:
        break
    code = sys.stdin.buffer.read(int(size)).decode()
    try:
        exec(code, namespace)
        sys.stdout.write("\x04\x04")
    except SystemExit:
        raise
    except BaseException as error:
        sys.stdout.write("\x04")
        sys.print_exception(error, sys.stdout)
        sys.stdout.write("\x04")
