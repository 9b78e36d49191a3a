"""A Python client of `credbroker mock`, written only from docs/testing.md.

It fetches a token with the client secret and one with the x509 binding and
validates each one's signature, issuer and audience with PyJWT through the
JWKS that uaadomain points to (https://{uaadomain}/token_keys).

    /usr/bin/python3 e2e/interop/python/validate.py MOCKDIR

MOCKDIR is `credbroker mock --dir MOCKDIR --hosts-file MOCKDIR/hosts`. Needs
Debian's python3-jwt and python3-requests (scripts/interop-deps.sh). It
prints one line per binding and never a secret or a token.
"""
import json
import os
import socket
import sys
import tempfile
from urllib.parse import urlparse

import jwt
import requests


def main(d):
    ca = os.path.join(d, "ca.crt")
    with open(os.path.join(d, "vcap.json")) as f:
        vcap = json.load(f)

    # The mock's names live under .localhost: resolve them from the hosts
    # file it wrote, in this process only (no change to /etc/hosts).
    hosts = {}
    with open(os.path.join(d, "hosts")) as f:
        for line in f:
            fields = line.split("#", 1)[0].split()
            for name in fields[1:]:
                hosts[name.lower()] = fields[0]
    system_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.lower() in hosts:
            host = hosts[host.lower()]
        return system_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo

    for b in vcap["xsuaa"]:
        c = b["credentials"]
        form = {"grant_type": "client_credentials", "client_id": c["clientid"]}
        if c.get("credential-type") == "x509":
            with tempfile.TemporaryDirectory() as tmp:
                cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
                for path, pem in ((cert, c["certificate"]), (key, c["key"])):
                    with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                        f.write(pem)
                r = requests.post(c["certurl"] + "/oauth/token", data=form, cert=(cert, key), verify=ca, timeout=20)
        else:
            form["client_secret"] = c["clientsecret"]
            r = requests.post(c["url"] + "/oauth/token", data=form, verify=ca, timeout=20)
        if r.status_code != 200:
            raise SystemExit("python pyjwt: %s: token request: HTTP %d" % (b["name"], r.status_code))
        token = r.json()["access_token"]

        # The keys: where uaadomain points, as SAP's token clients derive them.
        jwks_url = "https://%s/token_keys" % c["uaadomain"]
        jku = urlparse(jwt.get_unverified_header(token)["jku"]).netloc
        if jku != c["uaadomain"] and not jku.endswith("." + c["uaadomain"]):
            raise SystemExit("python pyjwt: %s: jku host %s is not under uaadomain %s" % (b["name"], jku, c["uaadomain"]))
        k = requests.get(jwks_url, params={"zid": c["zoneid"]}, verify=ca, timeout=20)
        k.raise_for_status()
        kid = jwt.get_unverified_header(token)["kid"]
        keys = [key for key in jwt.PyJWKSet.from_dict(k.json()).keys if key.key_id == kid]
        if not keys:
            raise SystemExit("python pyjwt: %s: kid %s is not in %s" % (b["name"], kid, jwks_url))
        claims = jwt.decode(token, keys[0].key, algorithms=["RS256"],
                            issuer=c["url"] + "/oauth/token", audience=c["clientid"])
        print("python pyjwt: %s: valid RS256 token from https://%s: iss=%s aud=%s zid=%s"
              % (b["name"], c["uaadomain"], claims["iss"], c["clientid"], claims["zid"]))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: /usr/bin/python3 validate.py MOCKDIR")
    try:
        main(sys.argv[1])
    except (requests.RequestException, jwt.PyJWTError) as e:
        raise SystemExit("python pyjwt: %s" % type(e).__name__ + ": " + str(e).split("\n")[0])
