# Sensorcast node: the board runs this after boot.py. The code lives in node.py.
# Updates never replace this file: a release that cannot even start is rolled back.
try:
    import node
except Exception as error:
    import loader

    if not loader.on_trial():
        raise
    loader.fail("it failed to start: %r" % error)
    import machine

    machine.reset()
node.main()
