"""Developer tools that are not shipped with massager-ctl: the coverage-guided fuzzer.

Nothing here imports the code under test at import time, so `tools.fuzz` can ask
atheris to instrument it first.
"""
