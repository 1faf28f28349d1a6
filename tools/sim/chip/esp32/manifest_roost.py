# The simulated chip with roost frozen in (tools/sim/chip/build.py, chip_binary(roost=True)): the
# chip's own ROM, then the project's manifest.py as a custom ESP32_GENERIC build takes it.
include("manifest.py")
include("../../../../manifest.py", roost_only=True)
