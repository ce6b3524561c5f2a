"""Ed25519 signature check (RFC 8032), for the release manifests ota.py installs.

MicroPython has no Ed25519 and ESP builds no SHA-512, so both are here in plain Python
on big ints, made for a small heap rather than speed (about 50 ms under the Unix port
on a desktop), and loaded only while a release is checked. Only verification: the
private key never leaves the operator's machine (tools/release.py)."""
import struct

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # the group's order
D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
SQRT_M1 = 19681161376707505956807079304988542015446066515923890162744021073123829784752
BASE = (15112221349535400772501151409588531511454012693041857206046113283949847762202,
        46316835694926478169428394003475163141307993866256225615783033603165251855960, 1,
        46827403850823179245072216630277197565144205554125654976674165829533817101731)
MASK = 2**64 - 1
SHA512_IV = (0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
             0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179)
SHA512_K = (  # its 80 round constants, as big-endian 64-bit words: bytes take the least heap
    b"\x42\x8a\x2f\x98\xd7\x28\xae\x22\x71\x37\x44\x91\x23\xef\x65\xcd\xb5\xc0\xfb\xcf\xec\x4d\x3b\x2f"
    b"\xe9\xb5\xdb\xa5\x81\x89\xdb\xbc\x39\x56\xc2\x5b\xf3\x48\xb5\x38\x59\xf1\x11\xf1\xb6\x05\xd0\x19"
    b"\x92\x3f\x82\xa4\xaf\x19\x4f\x9b\xab\x1c\x5e\xd5\xda\x6d\x81\x18\xd8\x07\xaa\x98\xa3\x03\x02\x42"
    b"\x12\x83\x5b\x01\x45\x70\x6f\xbe\x24\x31\x85\xbe\x4e\xe4\xb2\x8c\x55\x0c\x7d\xc3\xd5\xff\xb4\xe2"
    b"\x72\xbe\x5d\x74\xf2\x7b\x89\x6f\x80\xde\xb1\xfe\x3b\x16\x96\xb1\x9b\xdc\x06\xa7\x25\xc7\x12\x35"
    b"\xc1\x9b\xf1\x74\xcf\x69\x26\x94\xe4\x9b\x69\xc1\x9e\xf1\x4a\xd2\xef\xbe\x47\x86\x38\x4f\x25\xe3"
    b"\x0f\xc1\x9d\xc6\x8b\x8c\xd5\xb5\x24\x0c\xa1\xcc\x77\xac\x9c\x65\x2d\xe9\x2c\x6f\x59\x2b\x02\x75"
    b"\x4a\x74\x84\xaa\x6e\xa6\xe4\x83\x5c\xb0\xa9\xdc\xbd\x41\xfb\xd4\x76\xf9\x88\xda\x83\x11\x53\xb5"
    b"\x98\x3e\x51\x52\xee\x66\xdf\xab\xa8\x31\xc6\x6d\x2d\xb4\x32\x10\xb0\x03\x27\xc8\x98\xfb\x21\x3f"
    b"\xbf\x59\x7f\xc7\xbe\xef\x0e\xe4\xc6\xe0\x0b\xf3\x3d\xa8\x8f\xc2\xd5\xa7\x91\x47\x93\x0a\xa7\x25"
    b"\x06\xca\x63\x51\xe0\x03\x82\x6f\x14\x29\x29\x67\x0a\x0e\x6e\x70\x27\xb7\x0a\x85\x46\xd2\x2f\xfc"
    b"\x2e\x1b\x21\x38\x5c\x26\xc9\x26\x4d\x2c\x6d\xfc\x5a\xc4\x2a\xed\x53\x38\x0d\x13\x9d\x95\xb3\xdf"
    b"\x65\x0a\x73\x54\x8b\xaf\x63\xde\x76\x6a\x0a\xbb\x3c\x77\xb2\xa8\x81\xc2\xc9\x2e\x47\xed\xae\xe6"
    b"\x92\x72\x2c\x85\x14\x82\x35\x3b\xa2\xbf\xe8\xa1\x4c\xf1\x03\x64\xa8\x1a\x66\x4b\xbc\x42\x30\x01"
    b"\xc2\x4b\x8b\x70\xd0\xf8\x97\x91\xc7\x6c\x51\xa3\x06\x54\xbe\x30\xd1\x92\xe8\x19\xd6\xef\x52\x18"
    b"\xd6\x99\x06\x24\x55\x65\xa9\x10\xf4\x0e\x35\x85\x57\x71\x20\x2a\x10\x6a\xa0\x70\x32\xbb\xd1\xb8"
    b"\x19\xa4\xc1\x16\xb8\xd2\xd0\xc8\x1e\x37\x6c\x08\x51\x41\xab\x53\x27\x48\x77\x4c\xdf\x8e\xeb\x99"
    b"\x34\xb0\xbc\xb5\xe1\x9b\x48\xa8\x39\x1c\x0c\xb3\xc5\xc9\x5a\x63\x4e\xd8\xaa\x4a\xe3\x41\x8a\xcb"
    b"\x5b\x9c\xca\x4f\x77\x63\xe3\x73\x68\x2e\x6f\xf3\xd6\xb2\xb8\xa3\x74\x8f\x82\xee\x5d\xef\xb2\xfc"
    b"\x78\xa5\x63\x6f\x43\x17\x2f\x60\x84\xc8\x78\x14\xa1\xf0\xab\x72\x8c\xc7\x02\x08\x1a\x64\x39\xec"
    b"\x90\xbe\xff\xfa\x23\x63\x1e\x28\xa4\x50\x6c\xeb\xde\x82\xbd\xe9\xbe\xf9\xa3\xf7\xb2\xc6\x79\x15"
    b"\xc6\x71\x78\xf2\xe3\x72\x53\x2b\xca\x27\x3e\xce\xea\x26\x61\x9c\xd1\x86\xb8\xc7\x21\xc0\xc2\x07"
    b"\xea\xda\x7d\xd6\xcd\xe0\xeb\x1e\xf5\x7d\x4f\x7f\xee\x6e\xd1\x78\x06\xf0\x67\xaa\x72\x17\x6f\xba"
    b"\x0a\x63\x7d\xc5\xa2\xc8\x98\xa6\x11\x3f\x98\x04\xbe\xf9\x0d\xae\x1b\x71\x0b\x35\x13\x1c\x47\x1b"
    b"\x28\xdb\x77\xf5\x23\x04\x7d\x84\x32\xca\xab\x7b\x40\xc7\x24\x93\x3c\x9e\xbe\x0a\x15\xc9\xbe\xbc"
    b"\x43\x1d\x67\xc4\x9c\x10\x0d\x4c\x4c\xc5\xd4\xbe\xcb\x3e\x42\xb6\x59\x7f\x29\x9c\xfc\x65\x7e\x2a"
    b"\x5f\xcb\x6f\xab\x3a\xd6\xfa\xec\x6c\x44\x19\x8c\x4a\x47\x58\x17")


def sha512(prefix, data):
    """SHA-512 (FIPS 180-4) of ``prefix + data`` (``prefix`` under 128 bytes), bytes,
    without joining them: ``data``'s whole blocks are read in place, and 16 words of
    message schedule are all it keeps."""
    length = len(prefix) + len(data)
    state, w = list(SHA512_IV), [0] * 16
    block = prefix + data[:128 - len(prefix)]
    at = len(block) - len(prefix)  # of data, hashed or in block
    if len(block) == 128:
        _compress(state, w, block, 0)
        while at + 128 <= len(data):
            _compress(state, w, data, at)
            at += 128
        block = data[at:]
    block += b"\x80" + bytes((111 - length) % 128) + struct.pack(">QQ", 0, length * 8)
    for start in range(0, len(block), 128):
        _compress(state, w, block, start)
    return struct.pack(">8Q", *state)


def _compress(state, w, data, start):
    a, b, c, d, e, f, g, h = state
    for i in range(80):
        if i < 16:
            w[i] = struct.unpack_from(">Q", data, start + 8 * i)[0]
        else:
            x, y = w[(i - 15) & 15], w[(i - 2) & 15]
            s0 = ((x >> 1 | x << 63) ^ (x >> 8 | x << 56) ^ x >> 7) & MASK
            s1 = ((y >> 19 | y << 45) ^ (y >> 61 | y << 3) ^ y >> 6) & MASK
            w[i & 15] = (w[i & 15] + s0 + w[(i - 7) & 15] + s1) & MASK
        s1 = ((e >> 14 | e << 50) ^ (e >> 18 | e << 46) ^ (e >> 41 | e << 23)) & MASK
        t1 = h + s1 + ((e & f) ^ ((e ^ MASK) & g)) + struct.unpack_from(">Q", SHA512_K, 8 * i)[0] + w[i & 15]
        s0 = ((a >> 28 | a << 36) ^ (a >> 34 | a << 30) ^ (a >> 39 | a << 25)) & MASK
        h, g, f, e = g, f, e, (d + t1) & MASK
        d, c, b, a = c, b, a, (t1 + s0 + ((a & b) ^ (a & c) ^ (b & c))) & MASK
    for i, value in enumerate((a, b, c, d, e, f, g, h)):
        state[i] = (state[i] + value) & MASK


def _power(base, exponent):
    """``base ** exponent`` mod P (pow() takes no modulus on some ports)."""
    result = 1
    while exponent:
        if exponent & 1:
            result = result * base % P
        base = base * base % P
        exponent >>= 1
    return result


def _add(p, q):
    """Two points in extended coordinates (X, Y, Z, T) added; also doubles (p is q)."""
    a = (p[1] - p[0]) * (q[1] - q[0]) % P
    b = (p[1] + p[0]) * (q[1] + q[0]) % P
    c = 2 * p[3] * q[3] * D % P
    d = 2 * p[2] * q[2] % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % P, g * h % P, f * g % P, e * h % P


def _decode(encoded):
    """The point encoded in 32 bytes, or None if there is none."""
    y = int.from_bytes(encoded, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * _power(v, 3) * _power(u * _power(v, 7), (P - 5) // 8) % P
    if (v * x * x - u) % P:
        x = x * SQRT_M1 % P
        if (v * x * x - u) % P:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = P - x
    return x, y, 1, x * y % P


def _encode(point):
    inverse = _power(point[2], P - 2)
    x, y = point[0] * inverse % P, point[1] * inverse % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def verify(public_key, signature, message):
    """Whether ``signature`` (64 bytes) is ``public_key``'s (32 bytes) over ``message``."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    a = _decode(public_key)
    s = int.from_bytes(signature[32:], "little")
    if a is None or s >= L:
        return False
    h = int.from_bytes(sha512(signature[:32] + public_key, message), "little") % L
    minus_a = (P - a[0], a[1], 1, P - a[3])
    both = _add(BASE, minus_a)
    point = (0, 1, 1, 0)  # [s]B - [h]A, both scalars in one pass (Straus)
    for bit in range(252, -1, -1):  # s and h are below L, below 2**253
        point = _add(point, point)
        use_s, use_h = s >> bit & 1, h >> bit & 1
        if use_s or use_h:
            point = _add(point, both if use_s and use_h else BASE if use_s else minus_a)
    return _encode(point) == signature[:32]
