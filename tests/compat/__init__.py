"""Tests written the way a Channels 1.x project wrote them (modelled on
Channels 1.1's own test suite), with only ``channels`` changed to
``chanlite`` in the imports. If one of these needs more than that, the
difference must be listed in docs/migrating.md."""
