"""Unit tests of the emulator, the simulator and the containers."""
