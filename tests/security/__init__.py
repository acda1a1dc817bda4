"""A standing security suite: one test per hole found when chanlite was
probed as an attacker would (issue 13), each failing on the code before its
fix. Raw sockets, real servers, real processes; see docs/security.md for the
threat model these tests defend. IPC and codec tests are ``test_ipc_*`` and
``test_codec_*``; the server's are named after what they attack."""
