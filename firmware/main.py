# Sensorcast node: the board runs this after boot.py. The code lives in node.py.
import node

node.main()
