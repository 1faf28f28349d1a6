"""The simulated board: the MicroPython unix port as the chip, a LittleFS image as the flash,
shims for the silicon and a CPython supervisor that plays the world around it."""
