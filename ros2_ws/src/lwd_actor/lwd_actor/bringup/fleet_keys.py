"""The fleet's CURVE keys: made where missing, before the processes that read them start.

`description.expand_fleet` only names the files (`<keys_dir>/bridge.key[_secret]`,
`<keys_dir>/<robot>.key[_secret]`, the bridge's allowlist `<keys_dir>/allow/`); this
module writes them. Robots on other machines need their `.key_secret` copied there, and a
bridge elsewhere needs `bridge.key_secret` and `allow/`: the one-line summary says where they are.
"""

from __future__ import annotations

import shutil

from lwd_actor.bringup.description import FleetConfigError, FleetDescription
from lwd_common.transport.curve import generate_key_pair


def ensure_fleet_keys(fleet: FleetDescription) -> str | None:
    """Create missing key pairs for the bridge and every robot and fill the allowlist; a summary line."""
    keys = fleet.curve_keys_dir
    if keys is None:
        return None
    bridge_here = any(p.name == "bridge" for p in fleet.processes)
    if not bridge_here and not (keys / "bridge.key").exists():
        raise FleetConfigError(
            f"CURVE: the bridge runs elsewhere; copy its public key (bridge.key) to {keys}/"
        )
    made = []
    for name in ("bridge", *fleet.robot_ids) if bridge_here else fleet.robot_ids:
        if not (keys / f"{name}.key_secret").exists():
            generate_key_pair(keys, name)
            made.append(name)
    allow = keys / "allow"
    allow.mkdir(parents=True, exist_ok=True)
    for rid in fleet.robot_ids:  # the allowlist file name is the robot id that key may use
        if not (allow / f"{rid}.key").exists():
            shutil.copyfile(keys / f"{rid}.key", allow / f"{rid}.key")
    what = f"made keys for {', '.join(made)}" if made else "keys present"
    return f"CURVE on for {fleet.bridge_endpoint or 'the bridge'}: {what} in {keys} (allowlist {allow})"
