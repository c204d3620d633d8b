"""Tools for developing and proving LMS: test traffic (`lms pub`, `lms sim`), the emulator
launcher, `lms mon` as a subprocess, and the checks that a run stored everything once."""
