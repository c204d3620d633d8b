"""Tools for developing and proving LMS, shared by the tests, the benchmarks and `make`, so that
each exists once: test traffic (`traffic`: `lms pub`, `lms sim`), the Pub/Sub emulator
(`emulator`, `ports`), topics and subscriptions of a run (`resources`, `backlog`), `lms mon` as
a child process (`monitor_process`), the check that a run stored and counted everything once
(`verify`), and realistic stored logs in bulk (`seed`, `database`). `lms mon` never uses them."""
