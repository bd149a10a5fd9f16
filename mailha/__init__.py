"""mailha: a highly available, load-balanced Postfix cluster behind a VRRP virtual IP.

VRRP (RFC 3768/5798, interoperable with keepalived) moves the virtual IP; the master
programs Linux IPVS so mail is spread across every healthy Postfix node, each judged
by real SMTP health checks.
"""

__version__ = "0.1.0"
