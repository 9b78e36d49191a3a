// A Node client of `credbroker mock`, written only from docs/testing.md:
// it fetches a token with the client secret and one with the x509 binding,
// and validates each one's signature, issuer and audience with jose through
// the JWKS that uaadomain points to (https://{uaadomain}/token_keys).
//
//   node e2e/interop/node/validate.mjs MOCKDIR
//
// MOCKDIR is `credbroker mock --dir MOCKDIR --hosts-file MOCKDIR/hosts`.
// It prints one line per binding and never a secret or a token.
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';

const dir = process.argv[2];
if (!dir) {
  console.error('usage: node validate.mjs MOCKDIR');
  process.exit(2);
}
const ca = fs.readFileSync(path.join(dir, 'ca.crt'));
const vcap = JSON.parse(fs.readFileSync(path.join(dir, 'vcap.json'), 'utf8'));

// The mock's names live under .localhost: resolve them from the hosts file
// it wrote, in this process only (no change to /etc/hosts).
const hosts = new Map();
for (const line of fs.readFileSync(path.join(dir, 'hosts'), 'utf8').split('\n')) {
  const [addr, ...names] = line.replace(/#.*/, '').trim().split(/\s+/);
  for (const n of names) hosts.set(n.toLowerCase(), addr);
}
function lookup(hostname, options, callback) {
  const address = hosts.get(hostname.toLowerCase());
  if (!address) {
    callback(Object.assign(new Error(`${hostname}: not in the mock's hosts file`), { code: 'ENOTFOUND' }));
  } else if (options && options.all) {
    callback(null, [{ address, family: 4 }]);
  } else {
    callback(null, address, 4);
  }
}

function post(url, form, agent) {
  return new Promise((resolve, reject) => {
    const body = new URLSearchParams(form).toString();
    const req = https.request(url, {
      method: 'POST', agent,
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => (res.statusCode === 200
        ? resolve(JSON.parse(data))
        : reject(new Error(`POST ${url}: HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function check(name) {
  const b = vcap.xsuaa.find((x) => x.name === name);
  if (!b) throw new Error(`no binding ${name} in vcap.json`);
  const c = b.credentials;
  let tok;
  if (c['credential-type'] === 'x509') {
    const agent = new https.Agent({ ca, lookup, cert: c.certificate, key: c.key });
    tok = await post(`${c.certurl}/oauth/token`, { grant_type: 'client_credentials', client_id: c.clientid }, agent);
  } else {
    const agent = new https.Agent({ ca, lookup });
    tok = await post(`${c.url}/oauth/token`,
      { grant_type: 'client_credentials', client_id: c.clientid, client_secret: c.clientsecret }, agent);
  }
  // The keys: where uaadomain points, as SAP's token clients derive them.
  const jwksURL = new URL(`https://${c.uaadomain}/token_keys?zid=${encodeURIComponent(c.zoneid)}`);
  const jku = new URL(decodeProtectedHeader(tok.access_token).jku);
  if (jku.host !== c.uaadomain && !jku.host.endsWith(`.${c.uaadomain}`)) {
    throw new Error(`${name}: jku host ${jku.host} is not under uaadomain ${c.uaadomain}`);
  }
  const jwks = createRemoteJWKSet(jwksURL, { agent: new https.Agent({ ca, lookup }) });
  const { payload, protectedHeader } = await jwtVerify(tok.access_token, jwks, {
    issuer: `${c.url}/oauth/token`,
    audience: c.clientid,
    algorithms: ['RS256'],
  });
  console.log(`node jose: ${name}: valid ${protectedHeader.alg} token from ${jwksURL.origin}: iss=${payload.iss} aud=${c.clientid} zid=${payload.zid}`);
}

try {
  await check('xsuaa-secret');
  await check('xsuaa-x509');
} catch (e) {
  console.error(`node jose: ${e.message}`);
  process.exit(1);
}
