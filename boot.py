# Runs at every boot before main.py, in the same namespace. Kept tiny and free of
# networking so a broken application can never lock you out of the REPL:
# hold the BOOT button (GPIO0) while powering on and main.py will not start the app.
import machine

SAFE_MODE = machine.Pin(0, machine.Pin.IN, machine.Pin.PULL_UP).value() == 0
