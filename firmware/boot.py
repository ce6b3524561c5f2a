# Runs first at every reset: keep the vendor debug output off the serial console, and
# finish or undo a firmware update (loader.py). Updates never replace this file.
try:
    import esp

    esp.osdebug(None)
except (ImportError, AttributeError):
    pass
try:
    import sys

    import loader

    loader.recover()
    if loader.exists(loader.PENDING):
        import ota  # in a heap nothing else holds yet; the try ends in a reset

        ota.install_pending()
    for name in list(sys.modules):  # main.py starts on a clean heap
        del sys.modules[name]
except Exception as error:  # the board must boot whatever the flash holds
    print("update: at boot: %r" % error)
