"""A standing security suite: one test per hole found when chanlite was
probed as an attacker would (issue 13). Raw sockets, real servers, real
processes; see docs/security.md for the threat model these tests defend."""
