"""A corporate network in miniature, for the proxy and CA tests.

A CA made here; a TLS front for the fake STS whose certificate for `sts.corp.test` that CA
signed; and a forward proxy (CONNECT and absolute-form HTTP) that alone can reach the names of
the `corp.test` zone: whatever such name a request carries, it goes to the STS (CONNECT to the
TLS front, plain HTTP to the STS itself). Any other name gets 403: nothing leaves 127.0.0.1.

Usage: corp_net.py DIR STS_PORT
Prints `proxy=PORT ca=DIR/ca.pem tls=PORT` once it listens (the TLS front can also be reached
directly, for `sts.corp.test` pointed at 127.0.0.1 in a hosts file), then `proxied <method> <target>` for every
request the proxy takes. Runs until its stdin closes.
"""
import datetime
import os
import socket
import ssl
import sys
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ZONE = ".corp.test"
out_lock = threading.Lock()


def say(line):
    with out_lock:
        print(line, flush=True)


def make_ca_and_cert(directory):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "credwrap test corporate CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sts" + ZONE)]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("sts" + ZONE)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {name: os.path.join(directory, name) for name in ("ca.pem", "cert.pem", "key.pem")}
    with open(paths["ca.pem"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["cert.pem"], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths["key.pem"], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return paths


def pipe(a, b):
    def one_way(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
    threading.Thread(target=one_way, args=(a, b), daemon=True).start()
    threading.Thread(target=one_way, args=(b, a), daemon=True).start()


def listen():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def serve(server, handle):
    def loop():
        while True:
            conn, _ = server.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return None, b""
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def main():
    directory, sts_port = sys.argv[1], int(sys.argv[2])
    paths = make_ca_and_cert(directory)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(paths["cert.pem"], paths["key.pem"])
    front = listen()

    def terminate_tls(conn):
        try:
            wrapped = tls.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()  # a client that does not trust the CA hangs up here
            return
        pipe(wrapped, socket.create_connection(("127.0.0.1", sts_port)))

    serve(front, terminate_tls)
    proxy = listen()

    def forward(conn):
        head, rest = read_head(conn)
        if head is None:
            conn.close()
            return
        request_line, _, headers = head.partition("\r\n")
        method, target, version = request_line.split(" ", 2)
        host = target.split("//", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        if not host.endswith(ZONE):
            conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            conn.close()
            return
        say(f"proxied {method} {target}")
        if method == "CONNECT":
            upstream = socket.create_connection(("127.0.0.1", front.getsockname()[1]))
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream = socket.create_connection(("127.0.0.1", sts_port))
            path = "/" + target.split("//", 1)[-1].split("/", 1)[1] if "//" in target else target
            upstream.sendall(f"{method} {path} {version}\r\n{headers}\r\n\r\n".encode("latin-1") + rest)
        pipe(conn, upstream)

    serve(proxy, forward)
    say(f"proxy={proxy.getsockname()[1]} ca={paths['ca.pem']} tls={front.getsockname()[1]}")
    sys.stdin.read()


main()
