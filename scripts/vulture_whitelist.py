"""Names the dead-code finder (vulture, in scripts/test's lint step) reports but that are
used where it cannot see. Each says why; anything else it reports is dead and goes.

    vulture mailha lab bench tests scripts/vulture_whitelist.py --min-confidence 60
"""
# ruff: noqa
# mypy: ignore-errors

# The (exc_type, exc, tb) signature of __aexit__, fixed by the protocol (mailha.resource
# takes it as *exc_info once; the classes that do more on exit spell it out).
exc_type
tb
exc_info

# Fields of data read from the kernel or reported whole (JSON, dataclass reprs), kept so
# the model says what the other side sends even where no code reads a field yet.
cps  # lvs/model.py: IPVS rate counters, decoded with the others
inpps
outpps
inbps
outbps
first_success  # lab/smtpload.py OutageReport
last_result  # vrrp/track_scripts.py: TypedDict keys of `mailha status --json`
last_run
age
track_interfaces
fault_reasons
base_priority  # status_reply.py: TypedDict keys of `mailha status --json`
config_sha256
config_file_changed
uptime

# Named constants of a wire format: the values the codec must recognise or that
# document a field mailha never sets.
AH  # vrrp/packet.py AuthType: keepalived's IPsec-AH authentication (refused by name)
NA_FLAG_SOLICITED  # net/arp.py: the NA flag an unsolicited advertisement leaves clear

# Accepted for keepalived compatibility without effect (mailha/config/inert.py).
check_unicast_src
