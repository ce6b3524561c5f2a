# Runs first at every reset: keep the vendor debug output off the serial console.
try:
    import esp

    esp.osdebug(None)
except (ImportError, AttributeError):
    pass
