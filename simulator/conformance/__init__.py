"""The conformance suite: does a massager keep the rules of firmware_protocol/SPEC.md?

``massager-sim conformance URL`` speaks to any device at any address massager-ctl
takes (``serial:///dev/ttyUSB0``, ``socket://HOST:PORT``, ``ble://ADDRESS``,
``sim://``) and checks the MUSTs of the spec one by one: framing and resync,
re-sends answered from the reply cache, stale sequence numbers, stop and vent
first and from anyone, the session state table, value checks, leases, the pause
limit, the session cap, the challenge watchdog, faults latched until reset,
pairing and the authenticated link, replay after a restart, unpairing. It prints
a report grouped by spec section: pass, fail (with every frame sent and received,
in hex and decoded), or not tested and why; ``--json`` prints the same as a list
of ``{section, check, result, detail}`` (when nothing could be checked, one
failed entry that says why). It exits 0 when nothing failed, 1 when a check
failed (or the device could not be reached, or did not confirm it stopped), 2 on
a usage error, 128+N when signal N interrupted it.

What it does to the device, and what it needs from the maker:

- Without ``--inflate`` nothing it sends can put air in a chamber: no START, no
  RENEW. The checks that need a session are reported not tested. With
  ``--inflate`` they run, always at intensity 1 (the lowest level; the probe
  refuses to build anything higher) and for a few seconds; take the wraps off
  the legs first. After each such check the suite looks: a session left running
  is stopped, then vented, and a device that runs on or keeps air in a chamber
  past §10.11's 10 s fails that check (one that will not stop ends the run). The
  run ends with STOP and VENT and a look that the device is idle, its dump valve
  open and its chambers empty, and says whether it was confirmed. SIGINT or
  SIGTERM send STOP and VENT at once, then do the same; a second one stops the
  waiting.
- A device that requires pairing takes the commands that change its state only
  from a paired controller: hold its pairing button before the run, and the
  suite pairs (and unpairs at the end). Otherwise those checks are not tested.
- Replay after a restart needs the device restarted in the middle of the run:
  ``--restart-step`` asks the maker to switch it off and on; ``--restart-command
  CMD`` runs a command that does. A latched fault needs a fault:
  ``--fault-step`` asks the maker to cause one. For ``sim://`` the suite does
  all of this itself.
- Timing rules are checked against what the device announces in CAPABILITIES
  (watchdog, status interval, pause limit), measured where it can on the
  device's own uptime. A check that would wait longer than ``--patience``
  seconds for one (default 30: the pause limit and the session cap of most
  devices) is not tested unless the patience is raised. A simulator served with
  ``--speed`` says its speed and the suite keeps its time (between 0.1x and
  1000x); ``--speed`` says it for one that does not.
- What bounds a run against a device that misbehaves: HELLO unanswered is
  given up after three tries of 1.5 s; a link whose round trip is three
  quarters of the watchdog or more, or a device that floods the link (past 1000
  frames a second at its speed), ends the run with a sentence; a link that
  closes fails its check and the rest are not tested if it cannot be opened
  again; a check that meets something it cannot make sense of fails, saying
  what, and the run goes on.

Where it lives, and why: a package of the simulator, not of firmware_protocol,
which is sans-IO and must stay so. It opens the byte link with massager-ctl's
transports (`massager_ctl.transports.open_transport`) and speaks the protocol
at the frame level with `firmware_protocol` (`Frame`, `FrameDecoder`, the
messages), building its frames by hand so that it can send malformed, replayed,
stale and simultaneous ones; it shares none of `Connection`'s rules with the
devices it checks. The command imports it only when it runs, so nothing else of
``massager-sim`` starts slower for it.

`broken` is the other half: a simulator with one rule broken on purpose
(``massager-sim serve --broken RULE``, ``sim://?broken=RULE``), one per check,
which shows that each check can fail.

Modules: `probe` (the suite's end of the link), `suite` (the runner and what the
checks share), `checks` (the checks, by section), `hands` (what a person at the
device does), `report`, `command`, `broken`.
"""
