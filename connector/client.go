package connector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/internal/netx"
)

const (
	opPair   = "pair"
	opCSR    = "csr"
	opInfo   = "info"
	opRenew  = "renew"
	opRevoke = "revoke"
)

// maxBody bounds what is read from the connector.
const maxBody = 1 << 20

// Client talks to a connector. It is safe for concurrent use. Connections are
// pooled and reused: one pool for the pairing calls (no client certificate)
// and one for the mTLS calls that present the certificate of the
// GetClientCertificate hook.
type Client struct {
	options
	plain *http.Client
	mtls  *http.Client
	// presented is the SHA-256 of the leaf the hook returned for the last
	// mTLS call: when the hook's certificate changes (a renewal, a reload),
	// idle connections, which would keep presenting the old one, are closed.
	presented atomic.Pointer[[32]byte]
}

// Option configures a Client.
type Option func(*options)

// options are what the Options set; New validates them.
type options struct {
	roots    *x509.CertPool
	getCert  func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	dial     func(ctx context.Context, network, address string) (net.Conn, error)
	log      *slog.Logger
	now      func() time.Time
	keyType  KeyType
	attempts int
	backoff  time.Duration
	// rsaFallback retries a CSR refused with a 5xx with an RSA key.
	rsaFallback bool
	timeout     time.Duration
	err         error // the first invalid option
}

// invalid records the first invalid option; New returns it.
func (o *options) invalid(err error) {
	if o.err == nil {
		o.err = err
	}
}

// WithRootCAs sets the CAs that verify the connector's server certificate
// (default: the system pool).
func WithRootCAs(pool *x509.CertPool) Option {
	return func(o *options) { o.roots = pool }
}

// WithGetClientCertificate sets the hook that supplies the client certificate
// for mTLS calls (Info, Revoke). It is consulted on every new handshake, so a
// certificate that was renewed meanwhile is used on the next connection.
func WithGetClientCertificate(f func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) Option {
	return func(o *options) { o.getCert = f }
}

// WithCertificate presents a fixed client certificate on mTLS calls.
func WithCertificate(cert tls.Certificate) Option {
	return WithGetClientCertificate(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil })
}

// WithDialContext sets how connections are dialled (for example a resolver
// that sends "*.localhost" to 127.0.0.1).
func WithDialContext(f func(ctx context.Context, network, address string) (net.Conn, error)) Option {
	return func(o *options) { o.dial = f }
}

// WithLogger sets the logger (default: silent). URLs are logged without
// their query; tokens and keys are never logged.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithClock sets the time source used to check the validity of issued
// certificates (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now == nil {
			o.invalid(fmt.Errorf("%w: nil clock", ErrInvalidInput))
			return
		}
		o.now = now
	}
}

// WithKeyType sets the key algorithm of new keys for pairing. Without it the
// connector's "key-algorithm" is followed when it is one this package knows,
// and RSA 2048 otherwise. Renewal keeps the algorithm of the current key.
func WithKeyType(k KeyType) Option {
	return func(o *options) {
		if _, err := ParseKeyType(string(k)); err != nil {
			o.invalid(err)
			return
		}
		o.keyType = k
	}
}

// WithRSAFallback makes Pair retry a CSR with an ECDSA key that the
// connector answered with a 5xx once more with an RSA 2048 key, on the same
// csrUrl: a Kyma connector whose CA signs with RSA fails on ECDSA CSRs
// ("requested SignatureAlgorithm does not match private key type") and
// spends the CSR token only on success.
func WithRSAFallback() Option {
	return func(o *options) { o.rsaFallback = true }
}

// WithRetry bounds the retries of calls that failed before any answer
// arrived: attempts in total (at least 1; default 4), with exponential
// backoff starting at base (default 200ms, capped at 5s). A request carrying a
// one-time token is retried only when it provably never reached the server.
func WithRetry(attempts int, base time.Duration) Option {
	return func(o *options) {
		if attempts < 1 || base < 0 {
			o.invalid(fmt.Errorf("%w: retry attempts %d, base %v", ErrInvalidInput, attempts, base))
			return
		}
		o.attempts, o.backoff = attempts, base
	}
}

// WithTimeout bounds each HTTP call (default 30s).
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.invalid(fmt.Errorf("%w: timeout %v", ErrInvalidInput, d))
			return
		}
		o.timeout = d
	}
}

// New returns a Client.
func New(opts ...Option) (*Client, error) {
	c := &Client{options: options{
		log:      slog.New(slog.DiscardHandler),
		now:      time.Now,
		attempts: 4,
		backoff:  200 * time.Millisecond,
		timeout:  30 * time.Second,
	}}
	for _, o := range opts {
		o(&c.options)
	}
	if c.err != nil {
		return nil, c.err
	}
	if c.dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		c.dial = d.DialContext
	}
	c.plain = c.httpClient(nil)
	getCert := c.getCert
	if getCert == nil {
		getCert = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
	}
	c.mtls = c.httpClient(getCert)
	return c, nil
}

// httpClient builds a client whose TLS presents getCert's certificate (none
// when getCert is nil). Redirects are not followed: a one-time token must
// not travel to another URL.
func (c *Client) httpClient(getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) *http.Client {
	tr := &http.Transport{
		DialContext:         c.dial,
		TLSClientConfig:     &tls.Config{RootCAs: c.roots, GetClientCertificate: getCert, MinVersion: tls.VersionTLS12, Time: c.now},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       c.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// rotationRequest is a plausible certificate request, so that hooks which
// check it with CertificateRequestInfo.SupportsCertificate accept theirs.
var rotationRequest = &tls.CertificateRequestInfo{
	Version: tls.VersionTLS13,
	SignatureSchemes: []tls.SignatureScheme{
		tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.ECDSAWithP521AndSHA512,
		tls.PSSWithSHA256, tls.PSSWithSHA384, tls.PSSWithSHA512, tls.Ed25519,
		tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512,
	},
}

// checkRotation asks the certificate hook for its certificate before an
// mTLS call. When it is not the one the last call presented, the idle mTLS
// connections are closed: a pooled connection keeps the certificate of its
// handshake, and a gateway checks client certificates only at the
// handshake, so without this the first call after a renewal (the
// heartbeat's, above all) would still present the old certificate.
func (c *Client) checkRotation() {
	if c.getCert == nil {
		return
	}
	cert, err := c.getCert(rotationRequest)
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return // the handshake reports it
	}
	sum := sha256.Sum256(cert.Certificate[0])
	if last := c.presented.Swap(&sum); last != nil && *last != sum {
		c.mtls.CloseIdleConnections()
		c.log.Info("connector client certificate changed; idle connections closed", "sha256", hex.EncodeToString(sum[:]), "old_sha256", hex.EncodeToString(last[:]))
	}
}

// CloseIdleConnections closes pooled connections. The Client stays usable.
func (c *Client) CloseIdleConnections() {
	c.plain.CloseIdleConnections()
	c.mtls.CloseIdleConnections()
}

// RedactURL returns u without query, fragment and user info: one-time tokens
// travel in the query. Unparseable input yields "<invalid URL>".
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "<invalid URL>"
	}
	p.RawQuery, p.Fragment, p.User, p.RawFragment, p.ForceQuery = "", "", nil, "", false
	return p.String()
}

// checkURL validates a URL the connector or the user gave.
func checkURL(what, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: %s is empty", ErrInvalidInput, what)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s is not a URL", ErrInvalidInput, what, RedactURL(raw))
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("%w: %s %s: want an https URL", ErrInvalidInput, what, RedactURL(raw))
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%w: %s %s has no host", ErrInvalidInput, what, RedactURL(raw))
	}
	// The one-time token (in the query), the CSR and the mTLS calls must
	// not travel in clear: https, or http to loopback (local tests).
	if err := netx.CheckCredentialURL(u); err != nil {
		return nil, fmt.Errorf("%w: %s %s: %v", ErrInvalidInput, what, RedactURL(raw), err)
	}
	return u, nil
}

// call is one logical request.
type call struct {
	op       string
	method   string
	url      string
	body     []byte
	client   *http.Client
	oneShot  bool // carries a one-time token: never resent once it may have arrived
	wantCode []int
}

// do runs a call with bounded retries for failures before an answer, and
// decodes a JSON answer into out.
func (c *Client) do(ctx context.Context, k call, out any) error {
	red := RedactURL(k.url)
	if _, err := checkURL(k.op+" URL", k.url); err != nil {
		return err
	}
	if k.client == c.mtls {
		c.checkRotation()
	}
	var lastErr error
	delay := c.backoff
	for attempt := 1; attempt <= c.attempts; attempt++ {
		if attempt > 1 {
			c.log.Debug("connector retry", "op", k.op, "url", red, "attempt", attempt, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return &transportError{op: k.op, url: red, err: errors.Join(ctx.Err(), lastErr)}
			case <-t.C:
			}
			delay = min(delay*2, 5*time.Second)
		}
		resp, wrote, err := c.roundTrip(ctx, k)
		if err != nil {
			inner := err
			var ue *url.Error
			if errors.As(err, &ue) {
				inner = ue.Err // *url.Error prints the full URL: keep only the cause
			}
			te := &transportError{op: k.op, url: red, err: inner}
			lastErr = te
			if kind := tlsRefusal(inner); kind != nil {
				return &refusedError{transportError: te, kind: kind}
			}
			if ctx.Err() != nil || permanentTLS(inner) {
				return te
			}
			if k.oneShot && wrote {
				c.log.Warn("connector call failed after the one-time token was sent; not retried", "op", k.op, "url", red)
				return fmt.Errorf("%w: %w", ErrTokenMaybeUsed, te)
			}
			c.log.Debug("connector call failed before an answer", "op", k.op, "url", red, "attempt", attempt, "error", inner.Error())
			continue
		}
		return c.decode(k, red, resp, out)
	}
	return lastErr
}

func (c *Client) roundTrip(ctx context.Context, k call) (*http.Response, bool, error) {
	var wrote atomic.Bool
	trace := &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	}
	var body io.Reader
	if k.body != nil {
		body = bytes.NewReader(k.body)
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), k.method, k.url, body)
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Accept", "application/json")
	if k.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := k.client.Do(req)
	return resp, wrote.Load(), err
}

func (c *Client) decode(k call, red string, resp *http.Response, out any) error {
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &transportError{op: k.op, url: red, err: fmt.Errorf("reading the answer: %w", err)}
	}
	ok := false
	for _, code := range k.wantCode {
		ok = ok || resp.StatusCode == code
	}
	if !ok {
		e := &Error{Op: k.op, URL: red, StatusCode: resp.StatusCode}
		var body struct {
			Code  int    `json:"code"`
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &body) == nil && (body.Error != "" || body.Code != 0) {
			e.Code, e.Message = body.Code, body.Error
		} else {
			e.Message = excerpt(data)
		}
		e.Message = redactSecrets(e.Message, k.url)
		e.kind = classify(k.op, resp.StatusCode, e.Message)
		c.log.Info("connector refused", "op", k.op, "url", red, "status", resp.StatusCode, "error", e.Message)
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%w: %s %s: HTTP %d body is not the expected JSON: %v", ErrInvalidResponse, k.op, red, resp.StatusCode, err)
	}
	return nil
}

// excerpt returns the first line of a non-JSON body, shortened.
func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}

// redactSecrets removes the query values of rawURL (one-time tokens) from
// msg, in case a server echoes them in an error.
func redactSecrets(msg, rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return msg
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if len(v) >= 6 {
				msg = strings.ReplaceAll(msg, v, "[redacted]")
			}
		}
	}
	return msg
}

// permanentTLS reports whether err is a server certificate that does not
// verify: retrying cannot help.
func permanentTLS(err error) bool {
	var cv *tls.CertificateVerificationError
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &cv) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}
