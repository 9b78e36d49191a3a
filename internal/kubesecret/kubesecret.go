// Package kubesecret is a minimal client for one Kubernetes Secret: GET,
// PUT (compare-and-swap on metadata.resourceVersion) and POST on
// /api/v1/namespaces/NS/secrets[/NAME], with the pod's service-account
// token and CA. It is what the paired identity is persisted to
// (docs/reliability.md); k8s.io/client-go would do the same at many times
// the build cost (the measurement is in docs/reliability.md).
//
// The token file is read again before every request (the kubelet rotates
// projected tokens), every request has a timeout, and responses are read up
// to a bound. Errors name the Secret and the API server's status and
// reason, never the Secret's data or the token.
package kubesecret

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/internal/trust"
)

// DefaultServiceAccountDir is where Kubernetes mounts the pod's
// service-account token, CA and namespace.
const DefaultServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// Defaults of Config.
const (
	DefaultTimeout          = 10 * time.Second
	DefaultMaxResponseBytes = 4 << 20 // a Secret holds at most 1 MiB of data, base64 in JSON
)

var (
	// ErrNotFound: the Secret (or its namespace) does not exist (404).
	ErrNotFound = errors.New("kubesecret: not found")
	// ErrConflict: the Secret changed since it was read (409 on update),
	// or it already exists (409 on create). Read it again.
	ErrConflict = errors.New("kubesecret: conflict")
	// ErrConfig: the client cannot be built (no API server address, bad
	// name, unreadable CA).
	ErrConfig = errors.New("kubesecret: bad configuration")
)

// StatusError is an answer of the API server other than 2xx, 404 and 409
// (those are ErrNotFound and ErrConflict, wrapped in a StatusError too).
type StatusError struct {
	Secret string // namespace/name
	Method string
	Code   int
	Reason string // the Status object's reason (Forbidden, …), if any
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("kubesecret: %s secret %s: %d %s", e.Method, e.Secret, e.Code, http.StatusText(e.Code))
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	if e.Code == http.StatusForbidden || e.Code == http.StatusUnauthorized {
		msg += ": the service account needs get and update on this Secret (the chart's Role grants them)"
	}
	return msg
}

func (e *StatusError) Unwrap() error {
	switch e.Code {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	}
	return nil
}

// Config says where the Secret is and how to reach the API server.
type Config struct {
	// Host and Port of the API server (KUBERNETES_SERVICE_HOST and
	// KUBERNETES_SERVICE_PORT in a pod).
	Host, Port string
	// ServiceAccountDir holds token, ca.crt and namespace
	// (default DefaultServiceAccountDir).
	ServiceAccountDir string
	// Namespace of the Secret; "" reads ServiceAccountDir/namespace.
	Namespace string
	// Name of the Secret.
	Name string
	// Timeout bounds each request (default DefaultTimeout).
	Timeout time.Duration
	// MaxResponseBytes bounds each response body (default
	// DefaultMaxResponseBytes).
	MaxResponseBytes int64
}

// Client reads and writes one Secret. Safe for concurrent use.
type Client struct {
	cfg       Config
	tokenFile string
	base      string // https://host:port/api/v1/namespaces/NS/secrets
	hc        *http.Client
	tr        *http.Transport
}

var (
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
	dnsLabel     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

// ValidName reports why name is not a valid Secret name ("" when it is).
func ValidName(name string) string {
	if len(name) > 253 || !dnsSubdomain.MatchString(name) {
		return "want a DNS subdomain: lower-case letters, digits, '-' and '.', at most 253 characters"
	}
	return ""
}

// ValidNamespace reports why ns is not a valid namespace ("" when it is).
func ValidNamespace(ns string) string {
	if len(ns) > 63 || !dnsLabel.MatchString(ns) {
		return "want a DNS label: lower-case letters, digits and '-', at most 63 characters"
	}
	return ""
}

// New builds a client. It reads the CA and (when Config.Namespace is empty)
// the namespace once; the token is read before every request.
func New(cfg Config) (*Client, error) {
	if cfg.ServiceAccountDir == "" {
		cfg.ServiceAccountDir = DefaultServiceAccountDir
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxResponseBytes == 0 {
		cfg.MaxResponseBytes = DefaultMaxResponseBytes
	}
	switch {
	case cfg.Timeout < 0 || cfg.MaxResponseBytes < 0:
		return nil, fmt.Errorf("%w: negative timeout or response bound", ErrConfig)
	case cfg.Host == "" || cfg.Port == "":
		return nil, fmt.Errorf("%w: no API server address (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are set in a pod)", ErrConfig)
	}
	if why := ValidName(cfg.Name); why != "" {
		return nil, fmt.Errorf("%w: secret name %q: %s", ErrConfig, cfg.Name, why)
	}
	if cfg.Namespace == "" {
		b, err := inputfile.Read(filepath.Join(cfg.ServiceAccountDir, "namespace"))
		if err != nil {
			return nil, fmt.Errorf("%w: no namespace given and %v", ErrConfig, err)
		}
		cfg.Namespace = strings.TrimSpace(string(b))
	}
	if why := ValidNamespace(cfg.Namespace); why != "" {
		return nil, fmt.Errorf("%w: namespace %q: %s", ErrConfig, cfg.Namespace, why)
	}
	roots, err := trust.Roots(filepath.Join(cfg.ServiceAccountDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("%w: service-account CA: %v", ErrConfig, err)
	}
	tr := &http.Transport{
		Proxy:                 nil, // the API server is reached directly, never through HTTPS_PROXY
		DialContext:           (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   cfg.Timeout,
		ResponseHeaderTimeout: cfg.Timeout,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	return &Client{
		cfg:       cfg,
		tokenFile: filepath.Join(cfg.ServiceAccountDir, "token"),
		base:      "https://" + net.JoinHostPort(cfg.Host, cfg.Port) + "/api/v1/namespaces/" + url.PathEscape(cfg.Namespace) + "/secrets",
		tr:        tr,
		hc: &http.Client{
			Transport:     tr,
			Timeout:       cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// Name is namespace/name of the Secret, for messages.
func (c *Client) Name() string { return c.cfg.Namespace + "/" + c.cfg.Name }

// CloseIdleConnections closes the idle connections to the API server.
func (c *Client) CloseIdleConnections() { c.tr.CloseIdleConnections() }

// Secret is the part of a Secret this client reads and writes. Everything
// else of the object (labels, owner references, type, …) is kept as it was
// read and written back unchanged.
type Secret struct {
	// ResourceVersion is the version read; Update succeeds only when the
	// Secret still has it.
	ResourceVersion string
	// Annotations of the Secret (read and written).
	Annotations map[string]string
	// Data of the Secret, decoded.
	Data map[string][]byte

	rest map[string]json.RawMessage // the object as read, for Update
	meta map[string]json.RawMessage
}

// Get reads the Secret; ErrNotFound when it does not exist.
func (c *Client) Get(ctx context.Context) (*Secret, error) {
	return c.do(ctx, http.MethodGet, c.base+"/"+url.PathEscape(c.cfg.Name), nil)
}

// Update writes s (data and annotations) if the Secret still has
// s.ResourceVersion; ErrConflict when it changed in between, ErrNotFound
// when it is gone. It returns the Secret as written (its new version).
func (c *Client) Update(ctx context.Context, s *Secret) (*Secret, error) {
	if s.ResourceVersion == "" {
		return nil, fmt.Errorf("%w: update without a resourceVersion", ErrConfig)
	}
	body, err := c.encode(s)
	if err != nil {
		return nil, err
	}
	return c.do(ctx, http.MethodPut, c.base+"/"+url.PathEscape(c.cfg.Name), body)
}

// Create creates the Secret with s's data and annotations; ErrConflict when
// it exists already.
func (c *Client) Create(ctx context.Context, s *Secret) (*Secret, error) {
	body, err := c.encode(&Secret{Annotations: s.Annotations, Data: s.Data})
	if err != nil {
		return nil, err
	}
	return c.do(ctx, http.MethodPost, c.base, body)
}

func (c *Client) encode(s *Secret) ([]byte, error) {
	obj := map[string]json.RawMessage{}
	for k, v := range s.rest {
		obj[k] = v
	}
	meta := map[string]json.RawMessage{}
	for k, v := range s.meta {
		meta[k] = v
	}
	delete(meta, "managedFields") // kept by the API server when left out
	put := func(m map[string]json.RawMessage, k string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("kubesecret: encoding %s: %w", k, err)
		}
		m[k] = b
		return nil
	}
	var err error
	for _, kv := range []struct {
		m map[string]json.RawMessage
		k string
		v any
	}{
		{obj, "apiVersion", "v1"},
		{obj, "kind", "Secret"},
		{meta, "name", c.cfg.Name},
		{meta, "namespace", c.cfg.Namespace},
		{meta, "annotations", s.Annotations},
		{obj, "data", s.Data}, // []byte marshals as base64, as the API wants
	} {
		if err = put(kv.m, kv.k, kv.v); err != nil {
			return nil, err
		}
	}
	if s.ResourceVersion != "" {
		if err := put(meta, "resourceVersion", s.ResourceVersion); err != nil {
			return nil, err
		}
	}
	if _, ok := obj["type"]; !ok {
		if err := put(obj, "type", "Opaque"); err != nil {
			return nil, err
		}
	}
	if err := put(obj, "metadata", meta); err != nil {
		return nil, err
	}
	return json.Marshal(obj)
}

func (c *Client) token() (string, error) {
	b, err := inputfile.Read(c.tokenFile)
	if err != nil {
		return "", fmt.Errorf("kubesecret: service-account token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" || strings.ContainsAny(t, "\r\n") {
		return "", fmt.Errorf("kubesecret: service-account token %s is empty or malformed", c.tokenFile)
	}
	return t, nil
}

func (c *Client) do(ctx context.Context, method, u string, body []byte) (*Secret, error) {
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("kubesecret: %s secret %s: %w", method, c.Name(), err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "credbroker")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// The url.Error names the URL only: no token, no data.
		return nil, fmt.Errorf("kubesecret: %s secret %s: %w", method, c.Name(), scrub(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("kubesecret: %s secret %s: reading the answer: %w", method, c.Name(), scrub(err))
	}
	if int64(len(data)) > c.cfg.MaxResponseBytes {
		return nil, fmt.Errorf("kubesecret: %s secret %s: answer larger than %d bytes", method, c.Name(), c.cfg.MaxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &StatusError{Secret: c.Name(), Method: method, Code: resp.StatusCode}
		var st struct {
			Kind   string `json:"kind"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal(data, &st) == nil && st.Kind == "Status" && len(st.Reason) <= 64 && isWord(st.Reason) {
			se.Reason = st.Reason
		}
		return nil, se
	}
	return decode(data, c.Name())
}

// scrub keeps a transport error without anything the server sent.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func isWord(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

func decode(data []byte, name string) (*Secret, error) {
	s := &Secret{}
	if err := json.Unmarshal(data, &s.rest); err != nil {
		return nil, fmt.Errorf("kubesecret: secret %s: the answer is not a JSON object", name)
	}
	var kind string
	if raw, ok := s.rest["kind"]; ok {
		_ = json.Unmarshal(raw, &kind)
	}
	if kind != "Secret" {
		return nil, fmt.Errorf("kubesecret: secret %s: the answer is not a Secret", name)
	}
	if raw, ok := s.rest["metadata"]; ok {
		if err := json.Unmarshal(raw, &s.meta); err != nil {
			return nil, fmt.Errorf("kubesecret: secret %s: malformed metadata", name)
		}
	}
	delete(s.rest, "metadata")
	if raw, ok := s.meta["resourceVersion"]; ok {
		_ = json.Unmarshal(raw, &s.ResourceVersion)
	}
	if raw, ok := s.meta["annotations"]; ok {
		_ = json.Unmarshal(raw, &s.Annotations)
	}
	if raw, ok := s.rest["data"]; ok {
		// Decoding errors are reported without the data (json.Unmarshal's
		// messages for base64 name the offset, not the bytes).
		if err := json.Unmarshal(raw, &s.Data); err != nil {
			return nil, fmt.Errorf("kubesecret: secret %s: data is not base64", name)
		}
	}
	delete(s.rest, "data")
	if s.ResourceVersion == "" {
		return nil, fmt.Errorf("kubesecret: secret %s: the answer has no resourceVersion", name)
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	return s, nil
}
