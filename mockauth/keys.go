package mockauth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The signing keys: minting and verifying the JWTs the mock issues, and the
// published key set (/token_keys, /oauth2/certs).

type signingKey struct {
	kid string
	key *rsa.PrivateKey
}

func (s *Server) addKey() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("mockauth: signing key: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keySeq++
	k := &signingKey{kid: "key-id-" + strconv.Itoa(s.keySeq), key: key}
	// The previous key stays published so that tokens it signed still verify.
	s.keys = append([]*signingKey{k}, s.keys...)
	if len(s.keys) > 2 {
		s.keys = s.keys[:2]
	}
	return nil
}

// RotateKeys makes a fresh RSA key the signing key. The previous key stays
// in the JWKS (tokens it signed still verify); the one before is dropped.
func (s *Server) RotateKeys() error { return s.addKey() }

func (s *Server) signer() *signingKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[0]
}

// KeyID returns the kid of the current signing key.
func (s *Server) KeyID() string { return s.signer().kid }

// MintOption changes how [Server.MintToken] signs.
type MintOption func(*mintConfig)

type mintConfig struct {
	kid     string
	jku     string
	foreign bool
}

// WithKeyID sets the kid header to an arbitrary value.
func WithKeyID(kid string) MintOption { return func(c *mintConfig) { c.kid = kid } }

// WithJKU sets the jku header (default: the provider's token_keys URL).
func WithJKU(jku string) MintOption { return func(c *mintConfig) { c.jku = jku } }

// WithForeignKey signs with a fresh key that is not in the JWKS (the kid
// stays the current one unless WithKeyID says otherwise).
func WithForeignKey() MintOption { return func(c *mintConfig) { c.foreign = true } }

// MintToken signs exactly the given claims as an RS256 JWT with the current
// signing key (header kid and jku), for tests of token verification: wrong
// audience, expired, wrong issuer, unknown key, and so on.
func (s *Server) MintToken(claims map[string]any, opts ...MintOption) (string, error) {
	k := s.signer()
	cfg := mintConfig{kid: k.kid, jku: s.info.TokenKeysURL}
	for _, o := range opts {
		o(&cfg)
	}
	key := k.key
	if cfg.foreign {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return "", fmt.Errorf("mockauth: foreign key: %w", err)
		}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims(claims))
	t.Header["kid"] = cfg.kid
	if cfg.jku != "" {
		t.Header["jku"] = cfg.jku
	}
	out, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("mockauth: sign token: %w", err)
	}
	return out, nil
}

// verify checks a JWT the mock issued: signature with a published key,
// RS256, exp against the mock's clock.
func (s *Server) verify(token string, now time.Time) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, k := range s.keys {
			if k.kid == kid {
				return &k.key.PublicKey, nil
			}
		}
		return nil, errors.New("unknown kid")
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithTimeFunc(func() time.Time { return now }), jwt.WithExpirationRequired())
	if err != nil {
		return nil, errors.New("signature or expiry check failed")
	}
	return claims, nil
}

type jwk struct {
	Kty   string `json:"kty"`
	Use   string `json:"use"`
	Alg   string `json:"alg"`
	Kid   string `json:"kid"`
	N     string `json:"n"`
	E     string `json:"e"`
	Value string `json:"value"`
}

// JWKS returns the published verification keys as the JSON of /token_keys.
func (s *Server) JWKS() []byte {
	s.mu.Lock()
	keys := slices.Clone(s.keys)
	s.mu.Unlock()
	set := struct {
		Keys []jwk `json:"keys"`
	}{}
	for _, k := range keys {
		der, _ := x509.MarshalPKIXPublicKey(&k.key.PublicKey)
		set.Keys = append(set.Keys, jwk{
			Kty:   "RSA",
			Use:   "sig",
			Alg:   "RS256",
			Kid:   k.kid,
			N:     base64.RawURLEncoding.EncodeToString(k.key.N.Bytes()),
			E:     base64.RawURLEncoding.EncodeToString(big.NewInt(int64(k.key.E)).Bytes()),
			Value: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		})
	}
	b, _ := json.Marshal(set)
	return b
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeOAuthError(w, oauthErr(http.StatusMethodNotAllowed, "method_not_allowed", "Request method %q not supported", r.Method))
		return
	}
	s.countJWKS()
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	_, _ = w.Write(s.JWKS())
}
