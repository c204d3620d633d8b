"""The pipeline benchmark (bench/run.py), one module per part; see bench/run.py for what each
part measures and why."""
