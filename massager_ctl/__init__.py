"""massager-ctl: control an air-compression leg massager over BLE, serial or the simulator.

The public API is `Massager` (one connected device), the profile schema and
runner in `massager_ctl.profiles` and `massager_ctl.programs`, and the CLI.
"""

__version__ = "0.1.0"
