package guard

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// HeaderXFCC is the header in which a TLS-terminating front proxy (the Cloud
// Foundry router, Envoy, the Istio ingress gateway) passes the client
// certificate it received.
const HeaderXFCC = "X-Forwarded-Client-Cert"

// XFCC formats.
const (
	XFCCAuto  = "auto"  // Envoy when the value starts with a known Envoy key, else cf
	XFCCEnvoy = "envoy" // By=…;Hash=…;Cert="<URL-encoded PEM>";Chain=…;Subject="…";URI=…;DNS=…, elements comma-separated
	XFCCCF    = "cf"    // the Cloud Foundry router: the base64 of the certificate's DER, one value
)

// Defaults and ceilings of the xfcc: limits.
const (
	DefaultXFCCMaxBytes    = 32 << 10
	DefaultXFCCMaxElements = 16
	maxXFCCMaxBytes        = 1 << 20
	maxXFCCMaxElements     = 64
	maxXFCCPairs           = 32 // key=value pairs in one Envoy element
	maxXFCCChain           = 8  // certificates in one Chain value
)

// Reasons of XFCC refusals (metric label values; method mtls).
const (
	ReasonXFCCMalformed       = "xfcc_malformed"         // 400: a trusted proxy sent an XFCC the guard cannot read
	ReasonXFCCTooLarge        = "xfcc_too_large"         // 431: beyond xfcc.max_bytes or xfcc.max_elements
	ReasonXFCCNoCertificate   = "xfcc_no_certificate"    // 400: the chosen element has no Cert or Chain
	ReasonXFCCUntrustedPeer   = "xfcc_untrusted_peer"    // an XFCC from a peer not in xfcc.trusted_proxies was ignored, and nothing else authenticated
	ReasonXFCCProxyNotAllowed = "xfcc_proxy_not_allowed" // 403: the trusted peer's own TLS client certificate failed proxy_ca_file/proxy_subjects
)

// XFCC is the inbound xfcc: block: which front proxies may pass a client
// certificate in X-Forwarded-Client-Cert, and how to read it. mtls rules
// then verify that certificate exactly as one from the TLS handshake (the
// rule's ca_file, crl_file, subjects, sans, validity). From every other
// peer the header is ignored. The header is never forwarded to the app.
//
//	xfcc:
//	  trusted_proxies: [127.0.0.6]   # required: peers whose XFCC is read
//	  format: auto                   # auto (default), envoy or cf
//	  hops: 1                        # envoy: trusted proxies that each appended an element
//	  proxy_ca_file: /etc/gw/ca.crt  # TLS listener: the peer's own certificate must chain to it
//	  proxy_subjects: ["CN=gateway"] # ... and have one of these subjects
type XFCC struct {
	// TrustedProxies are the IP addresses or CIDR prefixes whose XFCC is
	// read. Independent of inbound.trusted_proxies (X-Forwarded-*).
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Format is auto (default), envoy or cf.
	Format string `yaml:"format"`
	// Hops is the number of trusted proxies that each appended an element
	// to an Envoy XFCC (default 1): the client's element is the hops-th
	// from the end. Elements before it came from outside and are ignored.
	Hops int `yaml:"hops"`
	// ProxyCAFile, on a TLS listener, requires the trusted peer to present
	// its own TLS client certificate chaining to this CA bundle.
	ProxyCAFile string `yaml:"proxy_ca_file"`
	// ProxySubjects, with ProxyCAFile, is the allowlist of the proxy
	// certificate's subjects (RFC 2253, as Go prints them).
	ProxySubjects []string `yaml:"proxy_subjects"`
	// ProxyURIs, with hops of 2 or more, is the allowlist of the proxies
	// behind the client's one: every element after the client's must carry
	// a URI (the certificate identity of the proxy that element describes,
	// e.g. the Istio ingress gateway's SPIFFE ID) from this list.
	ProxyURIs []string `yaml:"proxy_uris"`
	// MaxBytes bounds the header's total size (default 32 KiB); larger: 431.
	MaxBytes int `yaml:"max_bytes"`
	// MaxElements bounds the comma-separated elements (and header lines)
	// parsed (default 16); more: 431.
	MaxElements int `yaml:"max_elements"`
}

// validate checks the block; tls says whether the listener is TLS.
func (x *XFCC) validate(tls bool, hasMTLS bool, add func(field, format string, a ...any)) {
	if len(x.TrustedProxies) == 0 {
		add("xfcc.trusted_proxies", "required: the addresses of the front proxies whose X-Forwarded-Client-Cert is believed")
	}
	for i, p := range x.TrustedProxies {
		if pfx, err := parsePrefix(p); err != nil {
			add(fmt.Sprintf("xfcc.trusted_proxies[%d]", i), "%q: want an IP address or a CIDR prefix", p)
		} else if pfx.Bits() == 0 {
			add(fmt.Sprintf("xfcc.trusted_proxies[%d]", i), "%q trusts every address: anyone could name any client certificate", p)
		}
	}
	switch x.Format {
	case "", XFCCAuto, XFCCEnvoy, XFCCCF:
	default:
		add("xfcc.format", "%q: want auto, envoy or cf", x.Format)
	}
	if x.Hops < 0 || x.Hops > maxXFCCMaxElements {
		add("xfcc.hops", "%d: want 1 to %d (0 means 1)", x.Hops, maxXFCCMaxElements)
	}
	if x.MaxBytes < 0 || x.MaxBytes > maxXFCCMaxBytes {
		add("xfcc.max_bytes", "%d: want 1 to %d (0 means %d)", x.MaxBytes, maxXFCCMaxBytes, DefaultXFCCMaxBytes)
	}
	if x.MaxElements < 0 || x.MaxElements > maxXFCCMaxElements {
		add("xfcc.max_elements", "%d: want 1 to %d (0 means %d)", x.MaxElements, maxXFCCMaxElements, DefaultXFCCMaxElements)
	}
	if x.Hops > 0 && x.MaxElements > 0 && x.Hops > x.MaxElements {
		add("xfcc.hops", "%d: more than max_elements (%d)", x.Hops, x.MaxElements)
	}
	if x.ProxyCAFile != "" && !tls {
		add("xfcc.proxy_ca_file", "needs a TLS listener (inbound.tls): the proxy's certificate comes in the handshake")
	}
	if len(x.ProxySubjects) > 0 && x.ProxyCAFile == "" {
		add("xfcc.proxy_subjects", "needs proxy_ca_file (a subject means nothing without the CA that vouches for it)")
	}
	if len(x.ProxyURIs) > 0 && (x.Hops < 2 || x.Format == XFCCCF) {
		add("xfcc.proxy_uris", "needs hops of 2 or more and the envoy (or auto) format: it checks the elements after the client's")
	}
	for i, u := range x.ProxyURIs {
		if u == "" || strings.ContainsAny(u, " \t,;\"") {
			add(fmt.Sprintf("xfcc.proxy_uris[%d]", i), "%q: want a URI such as spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account", u)
		}
	}
	if !hasMTLS {
		add("xfcc", "no rule accepts mtls, so no certificate from X-Forwarded-Client-Cert would ever be used")
	}
}

// xfccReader reads client certificates from trusted proxies' XFCC headers.
type xfccReader struct {
	trusted     []netip.Prefix
	format      string
	hops        int
	maxBytes    int
	maxElements int
	proxyURIs   []string
	proxy       *mtlsVerifier // nil: the peer address suffices
}

func newXFCCReader(x *XFCC) *xfccReader {
	xr := &xfccReader{format: x.Format, hops: x.Hops, maxBytes: x.MaxBytes, maxElements: x.MaxElements, proxyURIs: x.ProxyURIs}
	for _, p := range x.TrustedProxies {
		pfx, _ := parsePrefix(p) // checked by Validate
		xr.trusted = append(xr.trusted, pfx)
	}
	if xr.format == "" {
		xr.format = XFCCAuto
	}
	if xr.hops == 0 {
		xr.hops = 1
	}
	if xr.maxBytes == 0 {
		xr.maxBytes = DefaultXFCCMaxBytes
	}
	if xr.maxElements == 0 {
		xr.maxElements = DefaultXFCCMaxElements
	}
	return xr
}

// clientCertHeaders are the headers in which proxies pass client
// certificates or facts about them: X-Forwarded-Client-Cert (Envoy, Cloud
// Foundry), Client-Cert and Client-Cert-Chain (RFC 9440), X-Client-Cert,
// X-Client-Verify, X-ARR-ClientCert (IIS ARR) and the prefixes below.
// Names are compared folded (foldName: case-insensitive, '_' and '.' equal
// to '-'), as CGI-style environments fold them.
var clientCertHeaders = []string{"x-forwarded-client-cert", "x-client-cert", "client-cert", "client-cert-chain",
	"x-client-verify", "x-arr-clientcert"}

// clientCertPrefixes: nginx's and Apache's SSL_CLIENT_* (often passed as
// X-SSL-Client-* or SSL_CLIENT_CERT), and AWS ALB's X-Amzn-Mtls-Clientcert*.
var clientCertPrefixes = []string{"x-ssl-client", "ssl-client-", "x-amzn-mtls-clientcert"}

func isClientCertHeader(name string) bool {
	n := foldName(name)
	for _, h := range clientCertHeaders {
		if n == h {
			return true
		}
	}
	for _, p := range clientCertPrefixes {
		if strings.HasPrefix(n, p) {
			return true
		}
	}
	return false
}

// stripClientCertHeaders removes every client-certificate header from h
// (used for trailers, which no proxy fills with a certificate: a caller
// could send one after the body).
func stripClientCertHeaders(h http.Header) {
	for k := range h {
		if isClientCertHeader(k) {
			delete(h, k)
		}
	}
}

// takeXFCC removes every client-certificate header from r (the app never
// sees one a caller or proxy sent) and returns the X-Forwarded-Client-Cert
// lines, nil when there were none.
func takeXFCC(r *http.Request) []string {
	vals := r.Header.Values(HeaderXFCC)
	for k := range r.Header {
		if isClientCertHeader(k) {
			delete(r.Header, k)
		}
	}
	return vals
}

// xfccOutcome says what the XFCC header decided.
type xfccOutcome int

const (
	xfccNotUsed  xfccOutcome = iota // absent, or not from a trusted proxy: the handshake decides
	xfccDecided                     // the certificate from the header was verified: id or ref
	xfccRejected                    // the header or the proxy is unacceptable: ref, no fallback
)

// authenticate verifies the client certificate a trusted proxy passed in
// vals against ru's mtls verifier. From an untrusted peer (or without an
// xfcc: block) vals are ignored.
func (xr *xfccReader) authenticate(r *http.Request, ru *rule, vals []string) (*identity, *refusal, xfccOutcome) {
	if xr == nil || len(vals) == 0 || !peerTrusted(r, xr.trusted) {
		return nil, nil, xfccNotUsed
	}
	if xr.proxy != nil {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			return nil, xfccRefusal(ReasonXFCCProxyNotAllowed, http.StatusForbidden, "the proxy presented no TLS client certificate (xfcc.proxy_ca_file is set)"), xfccRejected
		}
		if _, ref := xr.proxy.verify(r.TLS.PeerCertificates); ref != nil {
			return nil, xfccRefusal(ReasonXFCCProxyNotAllowed, http.StatusForbidden, "proxy certificate: "+ref.reason+": "+ref.detail), xfccRejected
		}
	}
	certs, err := xr.parse(vals)
	if err != nil {
		var xe *xfccError
		if errors.As(err, &xe) {
			return nil, xfccRefusal(xe.reason, xe.status, xe.msg), xfccRejected
		}
		return nil, xfccRefusal(ReasonXFCCMalformed, http.StatusBadRequest, err.Error()), xfccRejected
	}
	id, ref := ru.mtls.verify(certs)
	if ref != nil {
		ref.detail = HeaderXFCC + ": " + ref.detail
		return nil, ref, xfccDecided
	}
	return id, nil, xfccDecided
}

func xfccRefusal(reason string, status int, detail string) *refusal {
	return &refusal{method: MethodMTLS, reason: reason, status: status, detail: HeaderXFCC + ": " + detail}
}

// xfccError is a parse failure with the reason and status to answer.
type xfccError struct {
	reason string
	status int
	msg    string
}

func (e *xfccError) Error() string { return e.msg }

func malformed(format string, a ...any) error {
	return &xfccError{reason: ReasonXFCCMalformed, status: http.StatusBadRequest, msg: fmt.Sprintf(format, a...)}
}

// parse returns the client's certificate (and any chain after it) from the
// header lines, within the configured bounds.
func (xr *xfccReader) parse(vals []string) ([]*x509.Certificate, error) {
	n := 0
	for _, v := range vals {
		n += len(v)
	}
	if n > xr.maxBytes || len(vals) > xr.maxElements {
		return nil, &xfccError{reason: ReasonXFCCTooLarge, status: http.StatusRequestHeaderFieldsTooLarge,
			msg: fmt.Sprintf("%d bytes in %d lines, over the limit (xfcc.max_bytes %d, xfcc.max_elements %d)", n, len(vals), xr.maxBytes, xr.maxElements)}
	}
	joined := strings.Join(vals, ",")
	format := xr.format
	if format == XFCCAuto {
		format = detectXFCCFormat(joined)
	}
	if format == XFCCCF {
		if len(vals) != 1 {
			return nil, malformed("cf format: %d header lines, want one", len(vals))
		}
		c, err := parseCFXFCC(vals[0])
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{c}, nil
	}
	elems, err := parseEnvoyXFCC(joined, xr.maxElements)
	if err != nil {
		return nil, err
	}
	if len(elems) < xr.hops {
		return nil, malformed("%d element(s), fewer than xfcc.hops (%d)", len(elems), xr.hops)
	}
	client := len(elems) - xr.hops
	if len(xr.proxyURIs) > 0 {
		for i, el := range elems[client+1:] {
			if !el.hasURI(xr.proxyURIs) {
				return nil, &xfccError{reason: ReasonXFCCProxyNotAllowed, status: http.StatusForbidden,
					msg: fmt.Sprintf("element %d (a proxy behind the client's) has no URI in xfcc.proxy_uris", client+2+i)}
			}
		}
	}
	return elems[client].certificates()
}

// envoyKeys are the keys Envoy writes; auto detection looks at the first.
var envoyKeys = []string{"by", "hash", "cert", "chain", "subject", "uri", "dns"}

func detectXFCCFormat(v string) string {
	key, _, ok := strings.Cut(strings.TrimLeft(v, " \t"), "=")
	if !ok {
		return XFCCCF
	}
	key = strings.ToLower(key)
	for _, k := range envoyKeys {
		if key == k {
			return XFCCEnvoy
		}
	}
	return XFCCCF
}

// parseCFXFCC reads the Cloud Foundry router's value: the standard base64
// (padded or not) of one DER certificate.
func parseCFXFCC(v string) (*x509.Certificate, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, malformed("empty value")
	}
	enc := base64.StdEncoding
	if !strings.HasSuffix(v, "=") && len(v)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	der, err := enc.Strict().DecodeString(v)
	if err != nil {
		return nil, malformed("cf format: not the base64 of a certificate")
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, malformed("cf format: not a DER certificate: %v", err)
	}
	return c, nil
}

// xfccPair is one key=value of an Envoy element; key is lower case.
type xfccPair struct{ key, value string }

type xfccElement []xfccPair

func (e xfccElement) get(key string) (string, bool) {
	for _, p := range e {
		if p.key == key {
			return p.value, true
		}
	}
	return "", false
}

func (e xfccElement) hasURI(allow []string) bool {
	for _, p := range e {
		if p.key != "uri" {
			continue
		}
		for _, a := range allow {
			if p.value == a {
				return true
			}
		}
	}
	return false
}

// parseEnvoyXFCC splits an Envoy XFCC into elements (',') of key=value
// pairs (';'). A value may be double-quoted, with \" standing for a quote
// inside; ',', ';' and '=' inside quotes are literal. Keys are
// case-insensitive. Spaces and tabs around ',' (header lines joined) are
// skipped. At most maxElements elements of maxXFCCPairs pairs each.
func parseEnvoyXFCC(s string, maxElements int) ([]xfccElement, error) {
	var elems []xfccElement
	i := 0
	skipOWS := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	for {
		skipOWS()
		if len(elems) == maxElements {
			return nil, &xfccError{reason: ReasonXFCCTooLarge, status: http.StatusRequestHeaderFieldsTooLarge,
				msg: fmt.Sprintf("more than xfcc.max_elements (%d) elements", maxElements)}
		}
		var el xfccElement
		for {
			// key
			start := i
			for i < len(s) && isKeyByte(s[i]) {
				i++
			}
			if i == start {
				return nil, malformed("element %d: expected a key at byte %d", len(elems)+1, i)
			}
			if i >= len(s) || s[i] != '=' {
				return nil, malformed("element %d: key without '=' at byte %d", len(elems)+1, i)
			}
			key := strings.ToLower(s[start:i])
			i++
			// value
			var val string
			if i < len(s) && s[i] == '"' {
				i++
				var b strings.Builder
				closed := false
				for i < len(s) {
					c := s[i]
					switch {
					case c == '\\' && i+1 < len(s) && s[i+1] == '"':
						b.WriteByte('"')
						i += 2
						continue
					case c == '"':
						closed = true
					case c < 0x20 && c != '\t' || c == 0x7f:
						return nil, malformed("element %d: control character in %s", len(elems)+1, key)
					default:
						b.WriteByte(c)
					}
					i++
					if closed {
						break
					}
				}
				if !closed {
					return nil, malformed("element %d: unterminated quote in %s", len(elems)+1, key)
				}
				val = b.String()
			} else {
				start := i
				for i < len(s) && s[i] != ';' && s[i] != ',' {
					c := s[i]
					if c == '"' || c < 0x20 && c != '\t' || c == 0x7f {
						return nil, malformed("element %d: stray quote or control character in %s", len(elems)+1, key)
					}
					i++
				}
				val = strings.TrimRight(s[start:i], " \t")
			}
			switch key {
			case "by", "hash", "cert", "chain", "subject":
				if _, dup := el.get(key); dup {
					return nil, malformed("element %d: %s twice", len(elems)+1, key)
				}
			}
			if len(el) == maxXFCCPairs {
				return nil, malformed("element %d: more than %d pairs", len(elems)+1, maxXFCCPairs)
			}
			el = append(el, xfccPair{key, val})
			if i < len(s) && s[i] == ';' {
				i++
				continue
			}
			break
		}
		elems = append(elems, el)
		skipOWS()
		if i == len(s) {
			return elems, nil
		}
		if s[i] != ',' {
			return nil, malformed("element %d: unexpected %q at byte %d", len(elems), s[i], i)
		}
		i++
	}
}

func isKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// certificates returns the element's certificate: Cert, or the first of
// Chain (whose others become intermediates). When both are present they
// must agree, and a Hash must be the SHA-256 of the certificate.
func (e xfccElement) certificates() ([]*x509.Certificate, error) {
	certV, hasCert := e.get("cert")
	chainV, hasChain := e.get("chain")
	if !hasCert && !hasChain {
		return nil, &xfccError{reason: ReasonXFCCNoCertificate, status: http.StatusBadRequest,
			msg: "the client's element has no Cert (configure the proxy to forward the certificate)"}
	}
	var out []*x509.Certificate
	if hasChain {
		certs, err := decodeXFCCPEM(chainV, maxXFCCChain)
		if err != nil {
			return nil, malformed("Chain: %v", err)
		}
		out = certs
	}
	if hasCert {
		certs, err := decodeXFCCPEM(certV, 1)
		if err != nil {
			return nil, malformed("Cert: %v", err)
		}
		if out != nil && !bytes.Equal(out[0].Raw, certs[0].Raw) {
			return nil, malformed("Cert and the first certificate of Chain differ")
		}
		if out == nil {
			out = certs
		}
	}
	if h, ok := e.get("hash"); ok {
		sum := sha256.Sum256(out[0].Raw)
		if !strings.EqualFold(h, hex.EncodeToString(sum[:])) {
			return nil, malformed("Hash is not the SHA-256 of Cert")
		}
	}
	return out, nil
}

// decodeXFCCPEM URL-decodes v and reads 1 to max CERTIFICATE blocks; it
// allows nothing but whitespace around them.
func decodeXFCCPEM(v string, max int) ([]*x509.Certificate, error) {
	raw, err := url.PathUnescape(v)
	if err != nil {
		return nil, errors.New("bad URL encoding")
	}
	data := []byte(raw)
	var out []*x509.Certificate
	for {
		data = bytes.TrimLeft(data, " \t\r\n")
		if len(data) == 0 {
			break
		}
		if !bytes.HasPrefix(data, []byte("-----BEGIN CERTIFICATE-----")) {
			return nil, errors.New("not a PEM CERTIFICATE")
		}
		if len(out) == max {
			return nil, fmt.Errorf("more than %d certificate(s)", max)
		}
		b, rest := pem.Decode(data)
		if b == nil || b.Type != "CERTIFICATE" || len(b.Headers) > 0 {
			return nil, errors.New("not a PEM CERTIFICATE")
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(out)+1, err)
		}
		out = append(out, c)
		data = rest
	}
	if len(out) == 0 {
		return nil, errors.New("no certificate")
	}
	return out, nil
}

// xfccIgnored names the reason of a no-credentials refusal on an mtls rule
// when the request carried an XFCC the guard did not believe (no xfcc:
// block, or a peer outside xfcc.trusted_proxies).
func xfccIgnored(ref *refusal, ru *rule, vals []string, r *http.Request) {
	if ru.mtls == nil || len(vals) == 0 {
		return
	}
	ref.method = MethodMTLS
	ref.reason = ReasonXFCCUntrustedPeer
	ref.detail = HeaderXFCC + " from " + r.RemoteAddr + ", which is not in inbound.xfcc.trusted_proxies: ignored"
}

// setupXFCC builds the XFCC reader of the xfcc: block (nil: none) and loads
// the proxy CA bundle, which Run then reloads like a rule's ca_file.
func (g *Guard) setupXFCC(x *XFCC, now func() time.Time) error {
	if x == nil {
		return nil
	}
	xr := newXFCCReader(x)
	if x.ProxyCAFile != "" {
		src := &caSource{caFile: x.ProxyCAFile}
		if err := g.loadSource(src); err != nil {
			return fmt.Errorf("proxy_ca_file: %w", err)
		}
		xr.proxy = &mtlsVerifier{src: src, subjects: x.ProxySubjects, now: now}
	}
	g.xfcc = xr
	return nil
}
