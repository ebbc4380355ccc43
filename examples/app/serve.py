"""Serves app.py on 127.0.0.1 and a port the kernel picks, and prints that port first,
so a test can start it without racing for a fixed port."""

import socket
import sys

import uvicorn

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(f"listening {sock.getsockname()[1]}", flush=True)
sys.path.insert(0, __file__.rsplit("/", 1)[0])
config = uvicorn.Config("app:app", log_level="warning")
uvicorn.Server(config).run(sockets=[sock])
