"""The BGP announcement mode (issue 12): N active directors behind the routers' ECMP.

Every director holds the VIP on ``lo`` and programs the same IPVS service; it announces
``VIP/32`` through BIRD only while it is ready. mailha does not speak BGP itself: it
writes one disabled static protocol per VIP into a file that bird.conf includes
(:mod:`~mailha.bgp.include`), and enables or disables them over BIRD's control socket
(:mod:`~mailha.bgp.birdctl`) as the readiness of each VIP (:mod:`~mailha.bgp.readiness`)
changes. The static routes point at a tun device that only exists while mailha's
process does (:mod:`~mailha.bgp.deadman`), so a mailha killed with SIGKILL takes its
announcements with it. :mod:`~mailha.bgp.announcer` is the adapter that runs all this.
"""
