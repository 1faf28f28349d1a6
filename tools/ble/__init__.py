"""Host-side Bluetooth LE helpers.

bleak_bumble: a bleak backend that is a phone on the simulator's air (tools/sim/radio.py),
so that unchanged bleak code talks to simulated boards.
"""
