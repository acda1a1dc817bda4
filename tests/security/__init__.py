"""The standing security suite (issue 13): one test per hardening item, each
failing on the code before its fix. IPC and codec tests are ``test_ipc_*`` and
``test_codec_*``; the server's are named after the server."""
