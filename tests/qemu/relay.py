"""QEMU's guestfwd helper: QEMU runs it once per guest connection, with the
connection on stdin/stdout, and it joins that to 127.0.0.1:PORT on the host.

    guestfwd=tcp:10.0.2.100:80-cmd:python3 relay.py PORT
"""
import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def main():
    port = int(sys.argv[1])
    guest = socket.socket(fileno=sys.stdin.fileno())
    try:
        host = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return 1
    host.settimeout(None)
    back = threading.Thread(target=pump, args=(host, guest), daemon=True)
    back.start()
    pump(guest, host)
    back.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
