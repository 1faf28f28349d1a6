# srpmath for make-based ports (the simulator's unix build: tools/sim/chip/build.py).
SRPMATH_MOD_DIR := $(USERMOD_DIR)
SRC_USERMOD_C += $(SRPMATH_MOD_DIR)/srpmath.c
