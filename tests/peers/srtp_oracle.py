#!/usr/bin/env python3
"""An SRTP implementation independent of Sluice's, for the end-to-end tests: libsrtp2 (Cisco's
reference implementation, through the pylibsrtp binding) protects and unprotects packets on
request. One request per line on stdin, one answer per line on stdout:

    session <name> <suite> <base64 key||salt> <in|out>   -> ok
    protect <name> <rtp|rtcp> <hex>                      -> <hex> | ERR <reason>
    unprotect <name> <rtp|rtcp> <hex>                    -> <hex> | ERR <reason>
"""
import base64
import sys

from pylibsrtp import Error, Policy, Session

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
}


def main():
    sessions = {}
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "session":
                _, name, suite, key, way = words
                ssrc = Policy.SSRC_ANY_INBOUND if way == "in" else Policy.SSRC_ANY_OUTBOUND
                policy = Policy(
                    key=base64.b64decode(key), ssrc_type=ssrc, srtp_profile=PROFILES[suite]
                )
                sessions[name] = Session(policy=policy)
                answer = "ok"
            else:
                op, name, kind, data = words
                s = sessions[name]
                packet = bytes.fromhex(data)
                fn = {
                    ("protect", "rtp"): s.protect,
                    ("protect", "rtcp"): s.protect_rtcp,
                    ("unprotect", "rtp"): s.unprotect,
                    ("unprotect", "rtcp"): s.unprotect_rtcp,
                }[(op, kind)]
                answer = fn(packet).hex()
        except (Error, KeyError, ValueError) as e:
            answer = "ERR " + (str(e).replace("\n", " ") or type(e).__name__)
        sys.stdout.write(answer + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
