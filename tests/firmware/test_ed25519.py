"""The board's signature check (firmware/ed25519.py, under the real MicroPython) agrees
with RFC 8032 and with the desktop's signer (``cryptography``, as ``make release`` signs)."""
import hashlib
import json
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tools.release import public_key

RFC_8032 = [  # section 7.1: TEST 1, 2, 3 and SHA(abc): public key, message, signature
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
     "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
     "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]

VERIFY_ALL = """import ed25519, json
for key, message, signature in json.loads(open("cases.json").read()):
    print(ed25519.verify(bytes.fromhex(key), bytes.fromhex(signature), bytes.fromhex(message)))
"""


def verdicts(board, cases):
    """The board's verdict on each (public key, message, signature), all hex."""
    (board.flash / "cases.json").write_text(json.dumps(cases))
    return [line == "True" for line in board.python(VERIFY_ALL).splitlines()]


def test_the_board_accepts_rfc_8032s_signatures_and_refuses_them_altered(board):
    altered = [(key, message, signature[:-2] + f"{int(signature[-2:], 16) ^ 1:02x}")
               for key, message, signature in RFC_8032]
    other_message = [(key, message + "00", signature) for key, message, signature in RFC_8032]

    assert verdicts(board, RFC_8032) == [True] * 4
    assert verdicts(board, altered + other_message) == [False] * 8


def test_the_board_agrees_with_the_desktops_signer(board):
    """Messages of every length around SHA-512's 128-byte blocks, each signed, then with
    one bit of the message, of R, of S or of the key flipped."""
    cases, expected = [], []
    for length in (0, 1, 63, 64, 65, 111, 112, 127, 128, 129, 255, 256, 1500):
        key = Ed25519PrivateKey.generate()
        message = os.urandom(length)
        signature = key.sign(message)
        cases.append((public_key(key), message.hex(), signature.hex()))
        expected.append(True)
        for what, at in (("message", length // 2), ("signature", 5), ("signature", 40), ("key", 7)):
            changed = {"message": bytearray(message), "signature": bytearray(signature),
                       "key": bytearray(bytes.fromhex(public_key(key)))}
            if what == "message" and not length:
                continue
            changed[what][at] ^= 0x10
            cases.append((changed["key"].hex(), changed["message"].hex(), changed["signature"].hex()))
            expected.append(False)

    assert verdicts(board, cases) == expected


def test_the_boards_sha512_is_sha512(board):
    messages = [os.urandom(length) for length in (0, 1, 111, 112, 127, 128, 129, 239, 240, 256, 1000)]
    (board.flash / "messages.json").write_text(json.dumps([m.hex() for m in messages]))

    digests = board.python("import ed25519, json\n"
                           "for m in json.loads(open('messages.json').read()):\n"
                           "    m = bytes.fromhex(m)\n"
                           "    print(ed25519.sha512(m[:40], m[40:]).hex())\n").split()

    assert digests == [hashlib.sha512(m).hexdigest() for m in messages]
