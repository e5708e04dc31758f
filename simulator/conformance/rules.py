"""The rules the simulator can break on purpose, by name: a leaf, so that the config checks names.

`simulator.config` checks a ``broken=`` name against `RULES` without loading the
broken firmware (`broken`), which imports the config: no import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One rule broken: the check that catches it, its section, and what the device does."""

    check: str
    section: str
    does: str


RULES: dict[str, Rule] = {
    name: Rule(*fields)
    for name, fields in {
        "no-resync": ("resync", "3.3", "drops the frame that follows a block it dropped"),
        "chunk-is-frame": ("chunking", "3.3", "loses a frame that comes in more than one read"),
        "crc-ignored": ("bad-blocks", "3.3", "takes frames whose CRC is wrong"),
        "device-seq-skips": ("device-numbering", "4", "skips a seq before each STATUS"),
        "no-reply-cache": ("resend", "4", "remembers no reply: a re-send is STALE_SEQUENCE"),
        "reply-cache-of-4": ("reply-cache", "4", "remembers only its last 4 replies"),
        "stale-accepted": ("stale", "4", "runs a command whose seq is old"),
        "keepalive-moves-seq": ("keepalive-seq", "4", "takes a KEEPALIVE's seq as the newest"),
        "no-seq-wrap": ("seq-wrap", "4", "compares seqs as plain numbers: 0 is older than 65535"),
        "refusals-use-seq": (
            "refused-uses-no-seq",
            "4",
            "uses up the seq of a frame of the wrong version or a short payload",
        ),
        "cycle-count-uses-seq": (
            "refused-uses-no-seq",
            "4",
            "refuses a SET_CYCLE with the wrong number of targets only after taking its seq",
        ),
        "cycle-mode-unlisted": (
            "capabilities",
            "5.2",
            "announces the CYCLE feature and leaves the mode out of its list",
        ),
        "extra-bytes-refused": ("extra-bytes", "13", "refuses bytes after the fields it knows"),
        "no-status-after-hello": ("hello", "7.1", "sends no STATUS after CAPABILITIES"),
        "unknown-type-ignored": (
            "answers",
            "7.2",
            "does not answer a command type it does not know",
        ),
        "no-hello-needed": ("no-hello", "7.2", "takes commands with no present controller"),
        "watchdog-too-slow": (
            "watchdog",
            "7.3",
            "forgets a silent controller after three times the watchdog it announces",
        ),
        "slow-challenges": ("challenges", "7.3", "sends a CHALLENGE every half watchdog"),
        "any-keepalive-feeds": (
            "proof-of-life",
            "7.3",
            "takes any KEEPALIVE as proof of life, answering a challenge or not",
        ),
        "flagged-keepalive-feeds": (
            "proof-of-life",
            "7.3",
            "takes a KEEPALIVE with a reserved flag bit set as proof of life",
        ),
        "any-version-keepalive-feeds": (
            "proof-of-life",
            "7.3",
            "takes a KEEPALIVE of another version as proof of life",
        ),
        "stop-needs-hello": ("stop-from-anyone", "7.4", "refuses STOP and VENT before HELLO"),
        "stop-ignored": (
            "stop-from-anyone",
            "7.4",
            "answers STOP and VENT with ACK during a session and lets it run on",
        ),
        "stop-not-first": (
            "stop-first",
            "7.4",
            "handles the frames of one read in the order they came, a STOP after the rest",
        ),
        "preempts-refusals": (
            "stop-first",
            "7.4",
            "answers PREEMPTED to every other frame of a stop's read, before the link's "
            "checks: a stale or unsigned command, a GET_STATUS",
        ),
        "slow-status": ("status-reports", "7.5", "sends STATUS every three status intervals"),
        "pause-in-idle": ("table-idle", "8.2", "answers PAUSE in IDLE with ACK"),
        "resume-while-running": (
            "table-session",
            "8.2",
            "takes RESUME in RUNNING (and starts the pattern again)",
        ),
        "cycle-target-unchecked": (
            "values",
            "8.3",
            "loads a cycle whose targets are above max_target_dmmhg",
        ),
        "lease-ignored": ("lease", "8.4", "lets a session run an hour past its lease"),
        "no-pause-limit": ("pause-limit", "8.4", "keeps a paused session for ever"),
        "no-session-cap": ("session-cap", "10.6", "lets STARTs renew a session past its cap"),
        "session-outlives-link": (
            "silent-session",
            "10.3",
            "keeps a controller's session running when the controller is gone",
        ),
        "no-status-after-link-loss": (
            "silent-session",
            "10.3",
            "sends no STATUS after the SESSION_ENDED of a session its watchdog ended",
        ),
        "air-after-stop": (
            "vented-after-stop",
            "10.11",
            "shows air in its chambers after a STOP for ever, and latches no fault",
        ),
        "fault-not-latched": ("faults-latch", "10.8", "takes SET_MODE and SET_INTENSITY in FAULT"),
        "idle-exhausts-closed": ("valves", "10.9", "reports its exhausts shut in IDLE"),
        "window-stays-open": ("pairing", "12.2", "keeps the pairing window open after a pairing"),
        "paired-link-authenticated": (
            "pairing",
            "12.2",
            "authenticates the link with the new key at PAIRED, without a signed HELLO",
        ),
        "keyless-hello-accepted": (
            "signed-hello",
            "12.3",
            "opens an authenticated link for a signed HELLO without a key_id, under the key "
            "that verifies it",
        ),
        "hello-replay-accepted": (
            "signed-hello",
            "12.3",
            "opens a link for a signed HELLO whose counter was used",
        ),
        "unsigned-accepted": (
            "signed-commands",
            "12.3",
            "takes unsigned commands of the authenticated set on a signed link",
        ),
        "status-unsigned": ("device-signs", "12.3", "sends its STATUS unsigned on a signed link"),
        "counters-forgotten": (
            "restart",
            "12.1",
            "forgets the counters of its paired controllers when it restarts",
        ),
        "unpair-keeps-key": ("unpair", "12.4", "answers UNPAIR with ACK and keeps the key"),
    }.items()
}
"""Every rule the simulator can break, by name (``massager-sim broken`` lists them)."""
