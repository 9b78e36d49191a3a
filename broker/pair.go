package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/connector"
)

// The connector's Renewer is what certwatch renews through.
var _ certwatch.Renewer = (*connector.Renewer)(nil)

// PairRequest says what to pair and where to keep the result.
type PairRequest struct {
	// TokenURL is the one-time token URL from the connector. It is a
	// secret: logs and errors show it without its query.
	TokenURL string
	// Dir receives tls.key (0600), tls.crt, ca.crt and connection.json,
	// written atomically.
	Dir string
	// KeyType is the key algorithm; "" follows the connector's
	// key-algorithm (RSA 2048 when it names none).
	KeyType connector.KeyType
	// RSAFallback retries the same CSR token with an RSA 2048 key when the
	// connector refuses an ECDSA CSR with a 5xx (its CA signs with RSA).
	RSAFallback bool
	// Name is the certificate's name in the config; "" for `credbroker
	// pair`, whose messages name its flags instead.
	Name string
	// Now is the clock that checks the issued certificate (nil: the
	// system clock); the broker passes its own.
	Now func() time.Time
}

// Pair redeems a one-time token URL with the connector and persists the
// pair and connection.json into the request's directory. It is the one
// pairing of credbroker: `credbroker pair` and pairing at start
// (pairing_url_file, and the runtime connector of runtime_dir) both call
// it. The directory is checked before the token is spent (a "..data" link
// out of it is refused); the token is used up once the connector signed,
// even when writing fails. Bad input matches ErrConfig.
func Pair(ctx context.Context, req PairRequest, n *Network, log *slog.Logger) (*connector.Connection, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	what, hint := "--cert-dir", "with a new one-time token: --key-type rsa2048, or --rsa-fallback"
	if req.Name != "" {
		what, hint = fmt.Sprintf("certificate %q: dir", req.Name), "with a new one-time token: key_type: rsa2048"
	}
	if err := checkCertDir(log, what, req.Dir); err != nil {
		return nil, err
	}
	var opts []connector.Option
	if req.KeyType != "" {
		opts = append(opts, connector.WithKeyType(req.KeyType))
	}
	if req.RSAFallback {
		opts = append(opts, connector.WithRSAFallback())
	}
	if req.Now != nil {
		opts = append(opts, connector.WithClock(req.Now))
	}
	client, err := n.connectorClient(log, opts...)
	if err != nil {
		return nil, configError(err)
	}
	defer client.CloseIdleConnections()
	log.Debug("pairing with the connector", "certificate", req.Name, "url", connector.RedactURL(req.TokenURL))
	conn, err := client.Connect(ctx, req.TokenURL)
	if err != nil {
		if req.Name != "" {
			err = fmt.Errorf("pairing with %s: %w", connector.RedactURL(req.TokenURL), err)
		}
		if errors.Is(err, connector.ErrInvalidInput) {
			return nil, configError(err)
		}
		if ce := (*connector.CSRError)(nil); errors.As(err, &ce) && ce.KeyMismatch {
			return nil, fmt.Errorf("%w (%s)", err, hint)
		}
		return nil, err
	}
	if conn.InfoErr != nil {
		log.Warn("paired, but the management info call failed; the sidecar reads it again at start", "certificate", req.Name, "error", conn.InfoErr.Error())
	}
	data, err := conn.ConnectionInfo.Marshal()
	if err != nil {
		return nil, err
	}
	p := conn.Pairing
	err = certwatch.Persist(ctx, req.Dir, certwatch.Files{
		CertPEM: p.ChainPEM,
		KeyPEM:  p.KeyPEM,
		CAPEM:   p.CAPEM,
		Extra:   map[string][]byte{certwatch.ConnectionFile: data},
	})
	if err != nil {
		return nil, fmt.Errorf("paired, but writing %s failed (the one-time token is used up: a new one is needed to pair again): %w", req.Dir, err)
	}
	return conn, nil
}
